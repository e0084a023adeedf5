//! The geospatial commands' reads, and GEOSEARCHSTORE's apply. A place is a member of a sorted
//! set scored by its geohash ([`hash`]), so the places near one another are near one another in
//! score order; GEOADD is a ZADD.
//!
//! A search looks where Redis looks: the geohash cell around the centre, at a precision chosen
//! from the search's size, and its eight neighbours (those that may hold something), each a
//! range of scores; it keeps the places inside the circle or the box, measured as Redis
//! measures (haversine on its Earth radius). So it finds what Redis finds, in the same order
//! when the answer is not sorted, and reads the members of nine score ranges, whatever the size
//! of the set.

use bytes::Bytes;

use super::zsets::{order, Entries, Sorted, KIND_ZSET};
use super::ztree::NODE_ENTRIES;
use super::{read_collection, ApplyBatch, KeyRead};
use crate::command::geo::hash::{self, Hash};
use crate::command::{GeoFrom, GeoSearch, GeoShape, GeoSort, ReadQuery, WriteOp};
use crate::error::Result;
use crate::resp::Frame;

/// Redis's Mercator bound, from which the precision of a search is estimated.
const MERCATOR_MAX: f64 = 20037726.37;

/// A place a search found.
struct Found {
    member: Bytes,
    score: f64,
    lon: f64,
    lat: f64,
    /// From the centre, in meters.
    dist: f64,
}

/// A coordinate as Redis writes it (`%.17Lf`, trailing zeros taken off).
fn coordinate(value: f64) -> Frame {
    let text = format!("{value:.17}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    Frame::Bulk(Bytes::from(if text == "-0" { "0".to_owned() } else { text.to_owned() }))
}

/// A distance as Redis writes it (`%.4f`).
fn distance_frame(meters: f64, unit: f64) -> Frame {
    Frame::Bulk(Bytes::from(format!("{:.4}", meters / unit)))
}

/// The bits per coordinate of the cells a search of `range` meters at `lat` looks in.
fn estimate_step(mut range: f64, lat: f64) -> u8 {
    if range == 0.0 {
        return hash::STEP_MAX;
    }
    let mut step: i32 = 1;
    while range < MERCATOR_MAX {
        range *= 2.0;
        step += 1;
    }
    step -= 2;
    // Wider cells toward the poles.
    if lat.abs() > 66.0 {
        step -= 1;
        if lat.abs() > 80.0 {
            step -= 1;
        }
    }
    step.clamp(1, hash::STEP_MAX as i32) as u8
}

/// The longitudes and latitudes a shape around a place spans: `[lon_min, lat_min, lon_max,
/// lat_max]`.
fn bounds(lon: f64, lat: f64, shape: GeoShape) -> [f64; 4] {
    let (half_height, half_width) = match shape {
        GeoShape::Radius(radius) => (radius, radius),
        GeoShape::Box { width, height } => (height / 2.0, width / 2.0),
    };
    let (degrees, radians) = (hash::degrees, hash::radians);
    let lat_delta = degrees(half_height / hash::EARTH_RADIUS_M);
    let top = degrees(half_width / hash::EARTH_RADIUS_M / radians(lat + lat_delta).cos());
    let bottom = degrees(half_width / hash::EARTH_RADIUS_M / radians(lat - lat_delta).cos());
    // The wider edge: the one nearer the equator.
    let lon_delta = if lat < 0.0 { bottom } else { top };
    [lon - lon_delta, lat - lat_delta, lon + lon_delta, lat + lat_delta]
}

/// The cells a search looks in, as Redis picks them: the centre's, then its neighbours north,
/// south, east, west, north-east, north-west, south-east and south-west (none for a neighbour
/// that cannot hold anything inside the shape).
fn cells(lon: f64, lat: f64, shape: GeoShape) -> [Option<Hash>; 9] {
    let [min_lon, min_lat, max_lon, max_lat] = bounds(lon, lat, shape);
    let radius = match shape {
        GeoShape::Radius(radius) => radius,
        GeoShape::Box { width, height } => ((width / 2.0).powi(2) + (height / 2.0).powi(2)).sqrt(),
    };
    let mut step = estimate_step(radius, lat);
    let around = |step| {
        let centre = hash::encode(lon, lat, step);
        let at = |dx, dy| hash::moved(centre, dx, dy);
        [centre, at(0, 1), at(0, -1), at(1, 0), at(-1, 0), at(1, 1), at(-1, 1), at(1, -1), at(-1, -1)]
    };
    let mut found = around(step);
    // A neighbour too near the shape's edge to cover it: one bit less, larger cells.
    let [north, south, east, west] = [1, 2, 3, 4].map(|i| hash::decode(found[i]));
    let too_small =
        north.lat.1 < max_lat || south.lat.0 > min_lat || east.lon.1 < max_lon || west.lon.0 > min_lon;
    if step > 1 && too_small {
        step -= 1;
        found = around(step);
    }
    let mut cells = found.map(Some);
    if step >= 2 {
        let centre = hash::decode(found[0]);
        let mut drop = |which: &[usize]| which.iter().for_each(|&i| cells[i] = None);
        if centre.lat.0 < min_lat {
            drop(&[2, 7, 8]); // south
        }
        if centre.lat.1 > max_lat {
            drop(&[1, 5, 6]); // north
        }
        if centre.lon.0 < min_lon {
            drop(&[4, 6, 8]); // west
        }
        if centre.lon.1 > max_lon {
            drop(&[3, 5, 7]); // east
        }
    }
    cells
}

/// The distance from the centre to a place inside the shape; none if it is outside.
fn inside(centre: (f64, f64), shape: GeoShape, place: (f64, f64)) -> Option<f64> {
    match shape {
        GeoShape::Radius(radius) => {
            let dist = hash::distance(centre.0, centre.1, place.0, place.1);
            (dist <= radius).then_some(dist)
        }
        GeoShape::Box { width, height } => {
            if hash::lat_distance(place.1, centre.1) > height / 2.0 {
                return None;
            }
            if hash::distance(place.0, place.1, centre.0, place.1) > width / 2.0 {
                return None;
            }
            Some(hash::distance(centre.0, centre.1, place.0, place.1))
        }
    }
}

/// The places `q` finds in `sorted`, in the order it answers them; or the error of a
/// FROMMEMBER member that is not there.
fn search(
    sorted: &mut Sorted,
    ks: &dyn KeyRead,
    q: &GeoSearch,
) -> Result<std::result::Result<Vec<Found>, Frame>> {
    let centre = match &q.from {
        GeoFrom::LonLat(place) => *place,
        GeoFrom::Member(member) => match sorted.score(ks, member)? {
            Some(score) => hash::position(score),
            None => return Ok(Err(Frame::error("ERR could not decode requested zset member"))),
        },
    };
    // ANY stops at the first `count` places found.
    let limit = if q.any { q.count } else { None };
    let mut found: Vec<Found> = Vec::new();
    let cells = cells(centre.0, centre.1, q.shape);
    let mut last = 0;
    for (i, cell) in cells.iter().enumerate() {
        let Some(cell) = cell else { continue };
        if limit.is_some_and(|limit| found.len() as u64 >= limit) {
            break;
        }
        // Very large searches can give the same cell twice in a row (not counting the centre).
        if last != 0 && cells[last] == Some(*cell) {
            continue;
        }
        last = i;
        let min = hash::aligned(*cell) as f64;
        let max = hash::aligned(Hash { bits: cell.bits + 1, step: cell.step }) as f64;
        let from = sorted.count_below(ks, &|e| e.0 < min)?;
        let to = sorted.count_below(ks, &|e| e.0 < max)?;
        for (score, member) in sorted.ranks(ks, from, to)? {
            if limit.is_some_and(|limit| found.len() as u64 >= limit) {
                break;
            }
            let (lon, lat) = hash::position(score);
            if let Some(dist) = inside(centre, q.shape, (lon, lat)) {
                found.push(Found { member, score, lon, lat, dist });
            }
        }
    }
    let sort = match q.sort {
        // The nearest first, unless any `count` places will do.
        GeoSort::None if q.count.is_some() && !q.any => GeoSort::Asc,
        sort => sort,
    };
    match sort {
        GeoSort::Asc => found.sort_by(|a, b| a.dist.total_cmp(&b.dist)),
        GeoSort::Desc => found.sort_by(|a, b| b.dist.total_cmp(&a.dist)),
        GeoSort::None => {}
    }
    if let Some(count) = q.count {
        found.truncate(count.min(usize::MAX as u64) as usize);
    }
    Ok(Ok(found))
}

/// Answers a geospatial read ([`ReadQuery::GeoPos`] and the others after it).
pub(super) fn read_geo(ks: &dyn KeyRead, q: &ReadQuery, now: i64) -> Result<Frame> {
    let key = match q {
        ReadQuery::GeoPos { key, .. } | ReadQuery::GeoHash { key, .. } | ReadQuery::GeoDist { key, .. } => {
            key
        }
        ReadQuery::GeoSearch(search) => &search.key,
        other => unreachable!("not a geospatial read: {other:?}"),
    };
    let mut sorted =
        match read_collection(ks, key, now, KIND_ZSET, |data| Sorted::decode(data, NODE_ENTRIES))? {
            Err(wrongtype) => return Ok(wrongtype),
            Ok(None) if matches!(q, ReadQuery::GeoSearch(_)) => return Ok(Frame::Array(vec![])),
            Ok(found) => found.map_or(Sorted::Whole(Vec::new()), |(sorted, _)| sorted),
        };
    Ok(match q {
        ReadQuery::GeoPos { members, .. } => {
            let mut out = Vec::with_capacity(members.len());
            for member in members {
                out.push(match sorted.score(ks, member)? {
                    Some(score) => {
                        let (lon, lat) = hash::position(score);
                        Frame::Array(vec![coordinate(lon), coordinate(lat)])
                    }
                    None => Frame::NullArray,
                });
            }
            Frame::Array(out)
        }
        ReadQuery::GeoHash { members, .. } => {
            let mut out = Vec::with_capacity(members.len());
            for member in members {
                out.push(match sorted.score(ks, member)? {
                    Some(score) => Frame::Bulk(Bytes::from(hash::text(score))),
                    None => Frame::Null,
                });
            }
            Frame::Array(out)
        }
        ReadQuery::GeoDist { from, to, unit, .. } => match (sorted.score(ks, from)?, sorted.score(ks, to)?) {
            (Some(a), Some(b)) => {
                let ((lon1, lat1), (lon2, lat2)) = (hash::position(a), hash::position(b));
                distance_frame(hash::distance(lon1, lat1, lon2, lat2), *unit)
            }
            _ => Frame::Null,
        },
        ReadQuery::GeoSearch(q) => match search(&mut sorted, ks, q)? {
            Err(error) => error,
            Ok(found) => Frame::Array(found.into_iter().map(|place| reply(place, q)).collect()),
        },
        other => unreachable!("not a geospatial read: {other:?}"),
    })
}

/// One place of a search's answer: its name, or an array of its name and what WITHDIST,
/// WITHHASH and WITHCOORD ask, in that order.
fn reply(place: Found, q: &GeoSearch) -> Frame {
    if !(q.with_dist || q.with_hash || q.with_coord) {
        return Frame::Bulk(place.member);
    }
    let mut item = vec![Frame::Bulk(place.member)];
    if q.with_dist {
        item.push(distance_frame(place.dist, q.unit));
    }
    if q.with_hash {
        item.push(Frame::Integer(place.score as i64));
    }
    if q.with_coord {
        item.push(Frame::Array(vec![coordinate(place.lon), coordinate(place.lat)]));
    }
    Frame::Array(item)
}

impl ApplyBatch<'_> {
    /// Applies [`WriteOp::GeoSearchStore`]: the places found replace the destination, scored by
    /// their geohashes or (`store_dist`) their distances in the search's unit.
    pub(super) fn write_geo(&mut self, op: WriteOp) -> Result<Frame> {
        let WriteOp::GeoSearchStore { destination, search: q, store_dist } = op else {
            unreachable!("not a geospatial write: {op:?}")
        };
        let node_entries = self.limits.tree_node;
        let mut sorted =
            match self.live_collection(&q.key, KIND_ZSET, |data| Sorted::decode(data, node_entries))? {
                Err(wrongtype) => return Ok(wrongtype),
                Ok(None) => return self.store_result(destination, Vec::new()),
                Ok(Some((sorted, _))) => sorted,
            };
        let found = match search(&mut sorted, self, &q)? {
            Err(error) => return Ok(error),
            Ok(found) => found,
        };
        let mut result: Entries = found
            .into_iter()
            .map(|place| (if store_dist { place.dist / q.unit } else { place.score }, place.member))
            .collect();
        result.sort_by(order);
        self.store_result(destination, result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_search_precision_follows_the_size_and_the_latitude() {
        assert_eq!(estimate_step(0.0, 10.0), 26);
        assert_eq!(estimate_step(1.0, 10.0), 24, "a meter: cells of about a meter");
        assert_eq!(estimate_step(1000.0, 10.0), 14);
        assert_eq!(estimate_step(1000.0, 70.0), 13, "wider cells toward the poles");
        assert_eq!(estimate_step(1000.0, -85.0), 12);
        assert_eq!(estimate_step(f64::INFINITY, 0.0), 1);
    }

    #[test]
    fn coordinates_and_distances_are_written_as_redis_writes_them() {
        assert_eq!(coordinate(13.361389338970184), Frame::bulk("13.36138933897018433"));
        assert_eq!(coordinate(-2.5), Frame::bulk("-2.5"));
        assert_eq!(coordinate(0.0), Frame::bulk("0"));
        assert_eq!(distance_frame(166274.1515696004, 1000.0), Frame::bulk("166.2742"));
    }
}
