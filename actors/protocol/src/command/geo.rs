//! The geospatial commands: places stored in a sorted set, each scored by its geohash.
//!
//! # Formats
//! - `GEOADD key [NX|XX] [CH] longitude latitude member [longitude latitude member ...]`: a
//!   ZADD whose scores are the places' 52-bit geohashes ([`hash::score`]).
//! - `GEOPOS key [member ...]`, `GEODIST key member1 member2 [M|KM|FT|MI]`,
//!   `GEOHASH key [member ...]`
//! - `GEOSEARCH key FROMMEMBER member|FROMLONLAT longitude latitude BYRADIUS radius unit|BYBOX
//!   width height unit [ASC|DESC] [COUNT count [ANY]] [WITHCOORD] [WITHDIST] [WITHHASH]`,
//!   `GEOSEARCHSTORE destination source ... [STOREDIST]`
//! - `GEORADIUS key longitude latitude radius unit [WITHCOORD] [WITHDIST] [WITHHASH] [COUNT
//!   count [ANY]] [ASC|DESC] [STORE key|STOREDIST key]`, `GEORADIUSBYMEMBER key member radius
//!   unit ...`, and their read-only forms `GEORADIUS_RO`, `GEORADIUSBYMEMBER_RO` (no STORE).
//!
//! Redis looks at the key's type before a search's options: an option in error is answered
//! WRONGTYPE if the key holds something else than a sorted set
//! ([`ReadQuery::ArgumentError`]).

use bytes::Bytes;

use super::strings::parse_float;
use super::{
    int_arg, lower, syntax_error, Args, Command, GeoFrom, GeoSearch, GeoShape, GeoSort, ReadQuery, ValueType,
    WriteOp, ZAddCmp, ZAddCond,
};
use crate::resp::Frame;

/// Geohashes as Redis computes them: 26 bits of longitude and 26 of latitude, interleaved.
pub mod hash {
    /// Redis's limits (EPSG:900913): the poles cannot be encoded.
    pub const LAT_MIN: f64 = -85.05112878;
    pub const LAT_MAX: f64 = 85.05112878;
    pub const LON_MIN: f64 = -180.0;
    pub const LON_MAX: f64 = 180.0;
    /// Bits per coordinate of a stored place.
    pub const STEP_MAX: u8 = 26;
    /// The Earth's quadratic mean radius, as Redis's distances use it.
    pub const EARTH_RADIUS_M: f64 = 6372797.560856;

    /// A geohash: `step` bits of each coordinate, latitude's in the even bits and longitude's in
    /// the odd ones.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Hash {
        pub bits: u64,
        pub step: u8,
    }

    /// A cell: the ranges of longitude and latitude a geohash covers.
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub struct Cell {
        pub lon: (f64, f64),
        pub lat: (f64, f64),
    }

    /// Spreads the low 32 bits of `v` to the even bits.
    fn spread(v: u32) -> u64 {
        let mut x = v as u64;
        x = (x | (x << 16)) & 0x0000_FFFF_0000_FFFF;
        x = (x | (x << 8)) & 0x00FF_00FF_00FF_00FF;
        x = (x | (x << 4)) & 0x0F0F_0F0F_0F0F_0F0F;
        x = (x | (x << 2)) & 0x3333_3333_3333_3333;
        (x | (x << 1)) & 0x5555_5555_5555_5555
    }

    /// Gathers the even bits of `x` into the low 32.
    fn gather(mut x: u64) -> u32 {
        x &= 0x5555_5555_5555_5555;
        x = (x | (x >> 1)) & 0x3333_3333_3333_3333;
        x = (x | (x >> 2)) & 0x0F0F_0F0F_0F0F_0F0F;
        x = (x | (x >> 4)) & 0x00FF_00FF_00FF_00FF;
        x = (x | (x >> 8)) & 0x0000_FFFF_0000_FFFF;
        ((x | (x >> 16)) & 0xFFFF_FFFF) as u32
    }

    /// Whether Redis can encode the place.
    pub fn valid(lon: f64, lat: f64) -> bool {
        (LON_MIN..=LON_MAX).contains(&lon) && (LAT_MIN..=LAT_MAX).contains(&lat)
    }

    /// The geohash of a place (which must be [`valid`]) at `step` bits per coordinate, within
    /// the latitude range `lat_range` (Redis's limits, or ±90 for GEOHASH's strings).
    pub fn encode_in(lon: f64, lat: f64, step: u8, lat_range: (f64, f64)) -> Hash {
        let scale = (1u64 << step) as f64;
        let lat_offset = (lat - lat_range.0) / (lat_range.1 - lat_range.0) * scale;
        let lon_offset = (lon - LON_MIN) / (LON_MAX - LON_MIN) * scale;
        // Truncated as C's conversion to an unsigned integer does (the top edge wraps to 0).
        let bits = spread(lat_offset as u64 as u32) | (spread(lon_offset as u64 as u32) << 1);
        Hash { bits, step }
    }

    pub fn encode(lon: f64, lat: f64, step: u8) -> Hash {
        encode_in(lon, lat, step, (LAT_MIN, LAT_MAX))
    }

    /// The score a place is stored with: its geohash of 26 bits per coordinate.
    pub fn score(lon: f64, lat: f64) -> f64 {
        encode(lon, lat, STEP_MAX).bits as f64
    }

    /// The cell a geohash covers.
    pub fn decode(hash: Hash) -> Cell {
        let scale = (1u64 << hash.step) as f64;
        let (lat_cell, lon_cell) = (gather(hash.bits) as f64, gather(hash.bits >> 1) as f64);
        let lat_span = LAT_MAX - LAT_MIN;
        let lon_span = LON_MAX - LON_MIN;
        Cell {
            lat: (LAT_MIN + lat_cell / scale * lat_span, LAT_MIN + (lat_cell + 1.0) / scale * lat_span),
            lon: (LON_MIN + lon_cell / scale * lon_span, LON_MIN + (lon_cell + 1.0) / scale * lon_span),
        }
    }

    /// The place a stored score stands for: the middle of its cell, kept inside the limits.
    pub fn position(score: f64) -> (f64, f64) {
        let cell = decode(Hash { bits: score as u64, step: STEP_MAX });
        let lon = ((cell.lon.0 + cell.lon.1) / 2.0).clamp(LON_MIN, LON_MAX);
        let lat = ((cell.lat.0 + cell.lat.1) / 2.0).clamp(LAT_MIN, LAT_MAX);
        (lon, lat)
    }

    /// The geohash moved by one cell along longitude (`dx`) and latitude (`dy`), wrapping.
    pub fn moved(hash: Hash, dx: i8, dy: i8) -> Hash {
        let width = 64 - 2 * hash.step as u32;
        let step_mask = |mask: u64| if width >= 64 { 0 } else { mask >> width };
        let shift = |bits: u64, d: i8, lane: u64, other: u64| -> u64 {
            if d == 0 {
                return bits & lane;
            }
            let fill = step_mask(other);
            let moved = if d > 0 {
                (bits & lane).wrapping_add(fill + 1)
            } else {
                ((bits & lane) | fill).wrapping_sub(fill + 1)
            };
            moved & step_mask(lane)
        };
        let lon = shift(hash.bits, dx, 0xAAAA_AAAA_AAAA_AAAA, 0x5555_5555_5555_5555);
        let lat = shift(hash.bits, dy, 0x5555_5555_5555_5555, 0xAAAA_AAAA_AAAA_AAAA);
        Hash { bits: lon | lat, step: hash.step }
    }

    /// The geohash's bits as a 52-bit score prefix.
    pub fn aligned(hash: Hash) -> u64 {
        hash.bits << (52 - 2 * hash.step as u32)
    }

    pub fn radians(degrees: f64) -> f64 {
        degrees * (std::f64::consts::PI / 180.0)
    }

    pub fn degrees(radians: f64) -> f64 {
        radians / (std::f64::consts::PI / 180.0)
    }

    /// The distance in meters between two latitudes on one meridian.
    pub fn lat_distance(lat1: f64, lat2: f64) -> f64 {
        EARTH_RADIUS_M * (radians(lat2) - radians(lat1)).abs()
    }

    /// The great-circle distance in meters between two places (haversine).
    pub fn distance(lon1: f64, lat1: f64, lon2: f64, lat2: f64) -> f64 {
        let v = ((radians(lon2) - radians(lon1)) / 2.0).sin();
        if v == 0.0 {
            return lat_distance(lat1, lat2);
        }
        let (lat1, lat2) = (radians(lat1), radians(lat2));
        let u = ((lat2 - lat1) / 2.0).sin();
        let a = u * u + lat1.cos() * lat2.cos() * v * v;
        2.0 * EARTH_RADIUS_M * a.sqrt().asin()
    }

    /// GEOHASH's string: the place's standard geohash (latitude over ±90), 11 characters of
    /// base 32, the last of which Redis always writes as `0`.
    pub fn text(score: f64) -> String {
        const ALPHABET: &[u8; 32] = b"0123456789bcdefghjkmnpqrstuvwxyz";
        let (lon, lat) = position(score);
        let bits = encode_in(lon, lat, STEP_MAX, (-90.0, 90.0)).bits;
        (0..11)
            .map(|i| match i {
                10 => '0',
                i => ALPHABET[((bits >> (52 - (i + 1) * 5)) & 0x1f) as usize] as char,
            })
            .collect()
    }
}

/// `m`, `km`, `ft`, `mi` (any case): how many meters the unit is.
fn unit(arg: &[u8]) -> Result<f64, Frame> {
    match lower(arg).as_str() {
        "m" => Ok(1.0),
        "km" => Ok(1000.0),
        "ft" => Ok(0.3048),
        "mi" => Ok(1609.34),
        _ => Err(Frame::error("ERR unsupported unit provided. please use M, KM, FT, MI")),
    }
}

/// A longitude and a latitude, which Redis can encode.
fn lon_lat(lon: &[u8], lat: &[u8]) -> Result<(f64, f64), Frame> {
    let float = |arg: &[u8]| parse_float(arg).ok_or_else(|| Frame::error("ERR value is not a valid float"));
    let (lon, lat) = (float(lon)?, float(lat)?);
    if !hash::valid(lon, lat) {
        return Err(Frame::error(format!("ERR invalid longitude,latitude pair {lon:.6},{lat:.6}")));
    }
    Ok((lon, lat))
}

/// A distance of `what` (radius, width, height): a number, not negative (`negative`: the error
/// then).
fn distance(arg: &[u8], what: &str, negative: &str) -> Result<f64, Frame> {
    let value = parse_float(arg).ok_or_else(|| Frame::error(format!("ERR need numeric {what}")))?;
    if value < 0.0 {
        return Err(Frame::error(negative));
    }
    Ok(value)
}

/// Parses the geospatial commands; `None` for commands of other families.
pub fn parse(name: &'static str, args: &mut Args) -> Result<Option<Command>, Frame> {
    let read = |q| Ok(Some(Command::Read(q)));
    match name {
        "geoadd" => parse_geoadd(args).map(Some),
        "geopos" | "geohash" => {
            let key = args.arg();
            let members = args.rest();
            read(match name {
                "geopos" => ReadQuery::GeoPos { key, members },
                _ => ReadQuery::GeoHash { key, members },
            })
        }
        "geodist" => {
            let (key, from, to) = (args.arg(), args.arg(), args.arg());
            let unit = match args.try_next() {
                None => 1.0,
                Some(arg) => unit(&arg)?,
            };
            if !args.is_empty() {
                return Err(syntax_error());
            }
            read(ReadQuery::GeoDist { key, from, to, unit })
        }
        "geosearch"
        | "geosearchstore"
        | "georadius"
        | "georadius_ro"
        | "georadiusbymember"
        | "georadiusbymember_ro" => parse_search(name, args).map(Some),
        _ => Ok(None),
    }
}

fn parse_geoadd(args: &mut Args) -> Result<Command, Frame> {
    let key = args.arg();
    let mut rest = args.rest().into_iter().peekable();
    let (mut cond, mut ch, mut nx, mut xx) = (ZAddCond::Always, false, false, false);
    while let Some(arg) = rest.peek() {
        match lower(arg).as_str() {
            "nx" => nx = true,
            "xx" => xx = true,
            "ch" => ch = true,
            _ => break,
        }
        rest.next();
    }
    let rest: Vec<Bytes> = rest.collect();
    if rest.is_empty() || !rest.len().is_multiple_of(3) || (nx && xx) {
        return Err(syntax_error());
    }
    if nx {
        cond = ZAddCond::IfAbsent;
    } else if xx {
        cond = ZAddCond::IfPresent;
    }
    let mut pairs = Vec::with_capacity(rest.len() / 3);
    for place in rest.chunks(3) {
        let (lon, lat) = lon_lat(&place[0], &place[1])?;
        pairs.push((hash::score(lon, lat), place[2].clone()));
    }
    Ok(Command::Write(WriteOp::ZAdd { key, pairs, cond, cmp: ZAddCmp::Any, ch, incr: false }))
}

/// GEOSEARCH, GEOSEARCHSTORE and the GEORADIUS forms. An option in error becomes an
/// [`ReadQuery::ArgumentError`] on the source key (WRONGTYPE comes first, as in Redis).
fn parse_search(name: &'static str, args: &mut Args) -> Result<Command, Frame> {
    let typed = args.typed_name().to_owned();
    let destination = (name == "geosearchstore").then(|| args.arg());
    let key = args.arg();
    match search_options(name, &typed, key.clone(), args) {
        Ok((search, None)) => Ok(Command::Read(ReadQuery::GeoSearch(search))),
        Ok((search, Some((store, store_dist)))) => {
            let destination = destination.or(store).expect("a store has a destination");
            Ok(Command::Write(WriteOp::GeoSearchStore { destination, search, store_dist }))
        }
        Err(error) => {
            let Frame::Error(error) = error else { unreachable!("option errors are errors") };
            let expects = ValueType::SortedSet;
            Ok(Command::Read(ReadQuery::ArgumentError {
                key,
                expects,
                if_missing: Some(error.clone()),
                error,
            }))
        }
    }
}

/// A search's options; `Some((destination, store_dist))` if it stores its result (the
/// destination given by STORE or STOREDIST).
#[allow(clippy::type_complexity)]
fn search_options(
    name: &str,
    typed: &str,
    key: Bytes,
    args: &mut Args,
) -> Result<(GeoSearch, Option<(Option<Bytes>, bool)>), Frame> {
    let radius_form = name.starts_with("georadius");
    let (mut from, mut shape, mut unit_m) = (None, None, 1.0);
    let (mut sort, mut count, mut any) = (GeoSort::None, None, false);
    let (mut with_coord, mut with_dist, mut with_hash) = (false, false, false);
    let negative_radius = "ERR radius cannot be negative";
    match name {
        "georadius" | "georadius_ro" => {
            let (lon, lat) = (args.arg(), args.arg());
            from = Some(GeoFrom::LonLat(lon_lat(&lon, &lat)?));
        }
        "georadiusbymember" | "georadiusbymember_ro" => from = Some(GeoFrom::Member(args.arg())),
        _ => {}
    }
    if radius_form {
        let radius = distance(&args.arg(), "radius", negative_radius)?;
        unit_m = unit(&args.arg())?;
        shape = Some(GeoShape::Radius(radius * unit_m));
    }
    let (mut store, mut store_dist, mut storing) = (None, false, name == "geosearchstore");
    while let Some(arg) = args.try_next() {
        match lower(&arg).as_str() {
            "withdist" => with_dist = true,
            "withhash" => with_hash = true,
            "withcoord" => with_coord = true,
            "any" => any = true,
            "asc" => sort = GeoSort::Asc,
            "desc" => sort = GeoSort::Desc,
            "count" => {
                let n = int_arg(&args.value()?)?;
                if n <= 0 {
                    return Err(Frame::error("ERR COUNT must be > 0"));
                }
                count = Some(n as u64);
            }
            option @ ("store" | "storedist") if name == "georadius" || name == "georadiusbymember" => {
                store = Some(args.value()?);
                store_dist = option == "storedist";
                storing = true;
            }
            "storedist" if name == "geosearchstore" => store_dist = true,
            "frommember" if !radius_form => {
                let member = args.value()?;
                if matches!(from, Some(GeoFrom::LonLat(_))) {
                    return Err(syntax_error());
                }
                from = Some(GeoFrom::Member(member));
            }
            "fromlonlat" if !radius_form => {
                let (lon, lat) = (args.value()?, args.value()?);
                if matches!(from, Some(GeoFrom::Member(_))) {
                    return Err(syntax_error());
                }
                from = Some(GeoFrom::LonLat(lon_lat(&lon, &lat)?));
            }
            "byradius" if !radius_form => {
                let (radius, unit_arg) = (args.value()?, args.value()?);
                if matches!(shape, Some(GeoShape::Box { .. })) {
                    return Err(syntax_error());
                }
                let radius = distance(&radius, "radius", negative_radius)?;
                unit_m = unit(&unit_arg)?;
                shape = Some(GeoShape::Radius(radius * unit_m));
            }
            "bybox" if !radius_form => {
                let (width, height, unit_arg) = (args.value()?, args.value()?, args.value()?);
                if matches!(shape, Some(GeoShape::Radius(_))) {
                    return Err(syntax_error());
                }
                let negative = "ERR height or width cannot be negative";
                let width = distance(&width, "width", negative)?;
                let height = distance(&height, "height", negative)?;
                unit_m = unit(&unit_arg)?;
                shape = Some(GeoShape::Box { width: width * unit_m, height: height * unit_m });
            }
            _ => return Err(syntax_error()),
        }
    }
    let Some(from) = from else {
        return Err(Frame::error(format!(
            "ERR exactly one of FROMMEMBER or FROMLONLAT can be specified for {typed}"
        )));
    };
    let Some(shape) = shape else {
        return Err(Frame::error(format!(
            "ERR exactly one of BYRADIUS and BYBOX can be specified for {typed}"
        )));
    };
    if any && count.is_none() {
        return Err(Frame::error("ERR the ANY argument requires COUNT argument"));
    }
    if storing && (with_dist || with_hash || with_coord) {
        let which =
            if name == "geosearchstore" { "GEOSEARCHSTORE is" } else { "STORE option in GEORADIUS is" };
        return Err(Frame::error(format!(
            "ERR {which} not compatible with WITHDIST, WITHHASH and WITHCOORD options"
        )));
    }
    let search =
        GeoSearch { key, from, shape, unit: unit_m, sort, count, any, with_coord, with_dist, with_hash };
    Ok((search, storing.then_some((store, store_dist))))
}

#[cfg(test)]
mod tests {
    use super::hash::*;

    #[test]
    fn places_hash_as_redis_hashes_them() {
        // Redis's documentation: Palermo and Catania.
        assert_eq!(score(13.361389, 38.115556), 3479099956230698.0);
        assert_eq!(score(15.087269, 37.502669), 3479447370796909.0);
        let (lon, lat) = position(3479099956230698.0);
        assert_eq!(format!("{lon:.17}"), "13.36138933897018433");
        assert_eq!(format!("{lat:.17}"), "38.11555639549629859");
        assert_eq!(text(3479099956230698.0), "sqc8b49rny0");
        assert_eq!(text(3479447370796909.0), "sqdtr74hyu0");
        let (lon2, lat2) = position(3479447370796909.0);
        assert_eq!(format!("{:.4}", distance(lon, lat, lon2, lat2)), "166274.1516");
        // Moving a cell east and back west, or north and back south, returns to it.
        let cell = encode(13.361389, 38.115556, 10);
        assert_eq!(moved(moved(cell, 1, 0), -1, 0), cell);
        assert_eq!(moved(moved(cell, 0, 1), 0, -1), cell);
        let (east, here) = (decode(moved(cell, 1, 0)), decode(cell));
        assert_eq!(east.lon.0, here.lon.1, "the east neighbour starts where the cell ends");
        assert_eq!(east.lat, here.lat);
    }
}
