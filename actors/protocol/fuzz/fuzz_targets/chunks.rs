//! How the targets feed a byte stream to an incremental decoder: whole, one byte at a time, or
//! in the uneven pieces a socket delivers. A decoder must reach the same verdict every way.

/// Pieces of `input` whose lengths come from a xorshift generator seeded by `seed` (a byte of
/// the fuzz input, so the fuzzer steers the splits too): mostly a few bytes, sometimes hundreds.
pub fn uneven(input: &[u8], seed: u8) -> Vec<&[u8]> {
    let mut state = 0x9e37_79b9_7f4a_7c15 ^ u64::from(seed);
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut pieces = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let r = next();
        let len = if r % 8 == 0 { 1 + (r >> 8) % 512 } else { 1 + (r >> 8) % 8 } as usize;
        let (piece, tail) = rest.split_at(len.min(rest.len()));
        pieces.push(piece);
        rest = tail;
    }
    pieces
}

/// One byte per piece.
pub fn bytewise(input: &[u8]) -> Vec<&[u8]> {
    input.chunks(1).collect()
}
