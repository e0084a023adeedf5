//! Property test of the command parser: argument vectors built from real command names,
//! real options, numbers at the edges and random bytes never make `Command::parse` panic, and
//! every refusal is a Redis-style error reply (`-ERR ...`, `-WRONGTYPE ...`: an upper-case
//! code, then text on one line). Writes it accepts survive the Raft log's encoding.
//!
//! Seeded, so a failure is reproducible; `RAFTKV_PROPTEST_CASES` sets the cases per seed.

mod support;

use std::panic::{catch_unwind, AssertUnwindSafe};

use actors::command::{Command, Proposal, RequestId, BATCH_CONTEXT, COMMAND_TABLE};
use actors::command::{ReadQuery, WriteOp};
use actors::resp::{Frame, RespCodec, RespLimits};
use bytes::{Bytes, BytesMut};
use support::{cases, Rng, SEEDS};
use tokio_util::codec::Encoder;

/// Options and subcommands of the commands raft-kv implements, and a few it does not.
const WORDS: &[&str] = &[
    "EX",
    "PX",
    "EXAT",
    "PXAT",
    "KEEPTTL",
    "PERSIST",
    "NX",
    "XX",
    "GT",
    "LT",
    "GET",
    "SET",
    "LEN",
    "IDX",
    "MINMATCHLEN",
    "WITHMATCHLEN",
    "MATCH",
    "COUNT",
    "TYPE",
    "REPLACE",
    "DB",
    "AUTH",
    "SETNAME",
    "GETNAME",
    "ID",
    "INFO",
    "LIST",
    "DOCS",
    "SETINFO",
    "RESETSTAT",
    "ADD",
    "REMOVE",
    "NODE",
    "TRANSFER-LEADER",
    "FLUSH",
    "ASYNC",
    "SYNC",
    "default",
    "string",
    "none",
    "*",
    "k",
    "key",
    "",
];

/// Numbers where parsers go wrong: signs, zeros, overflow, floats, specials.
const NUMBERS: &[&str] = &[
    "0",
    "1",
    "-1",
    "2",
    "3",
    "10",
    "100",
    "-0",
    "00",
    "+1",
    " 1",
    "1 ",
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551616",
    "4611686018427387904",
    "1.5",
    "-1.5",
    "1e3",
    "1e400",
    "inf",
    "-inf",
    "+inf",
    "nan",
    "0x10",
    "",
    "2147483648",
];

fn random_arg(rng: &mut Rng) -> Bytes {
    match rng.below(10) {
        0..=3 => Bytes::from_static(rng.pick(WORDS).as_bytes()),
        4..=6 => Bytes::from_static(rng.pick(NUMBERS).as_bytes()),
        7 => Bytes::from(rng.pick(WORDS).to_ascii_lowercase()),
        _ => Bytes::from(rng.bytes(12)),
    }
}

fn random_request(rng: &mut Rng) -> Vec<Bytes> {
    let name: Bytes = match rng.below(20) {
        0 => Bytes::from(rng.bytes(10)),
        1 => Bytes::from_static(rng.pick(WORDS).as_bytes()),
        // Redis's names are case-insensitive: mix cases.
        n => {
            let name = rng.pick(COMMAND_TABLE).name;
            Bytes::from(if n % 2 == 0 { name.to_ascii_uppercase() } else { name.to_string() })
        }
    };
    let mut args = vec![name];
    let extra = if rng.one_in(10) { rng.below(40) } else { rng.below(7) };
    for _ in 0..extra {
        args.push(random_arg(rng));
    }
    args
}

/// A Redis error reply: an upper-case code word (`ERR`, `WRONGTYPE` ...), then text that goes
/// on the wire as one line (the encoder turns CR and LF, which may come from the client's own
/// arguments, into spaces, as Redis does).
fn is_redis_error(frame: &Frame) -> bool {
    let Frame::Error(text) = frame else { return false };
    let code = text.split(' ').next().unwrap_or_default();
    let mut wire = BytesMut::new();
    RespCodec::new(RespLimits::default()).encode(frame, &mut wire).expect("encoding cannot fail");
    !code.is_empty()
        && code.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
        && wire.starts_with(b"-")
        && wire.iter().position(|&b| b == b'\r') == Some(wire.len() - 2)
        && wire.ends_with(b"\r\n")
}

#[test]
fn random_argument_vectors_never_panic_and_errors_are_redis_errors() {
    let per_seed = cases(20_000);
    let (mut accepted, mut refused) = (0usize, 0usize);
    for seed in SEEDS {
        let mut rng = Rng::new(seed);
        for case in 0..per_seed {
            let args = random_request(&mut rng);
            let shown: Vec<String> =
                args.iter().map(|a| format!("{:?}", String::from_utf8_lossy(a))).collect();
            let outcome = catch_unwind(AssertUnwindSafe(|| Command::parse_checked(args.clone())))
                .unwrap_or_else(|_| {
                    panic!("seed {seed} case {case}: parsing [{}] panicked", shown.join(", "))
                });
            match outcome {
                Ok(Ok(command)) => {
                    accepted += 1;
                    if let Command::Write(op) | Command::Blocking { op, .. } = command {
                        // What the log stores must decode to the same operation on every replica.
                        let proposal =
                            Proposal { origin: RequestId { node: 1, incarnation: 2, seq: 3 }, now_ms: 4, op };
                        let decoded = Proposal::decode(&proposal.encode()).unwrap_or_else(|e| {
                            panic!("seed {seed} case {case}: [{}]: {e}", shown.join(", "))
                        });
                        assert_eq!(decoded, proposal, "seed {seed} case {case}: [{}]", shown.join(", "));
                        // And inside a batch entry, next to another proposal.
                        let encoded = proposal.encode();
                        let batch =
                            Proposal::encode_batch([encoded.as_slice(), encoded.as_slice()].into_iter());
                        let decoded = Proposal::decode_entry(BATCH_CONTEXT, &batch).unwrap_or_else(|e| {
                            panic!("seed {seed} case {case}: [{}] in a batch: {e}", shown.join(", "))
                        });
                        assert_eq!(
                            decoded,
                            [proposal.clone(), proposal],
                            "seed {seed} case {case}: in a batch"
                        );
                    }
                }
                Ok(Err(reply)) | Err(reply) => {
                    refused += 1;
                    assert!(
                        is_redis_error(&reply),
                        "seed {seed} case {case}: [{}] was refused with {reply:?}, not a Redis error",
                        shown.join(", ")
                    );
                }
            }
        }
    }
    // The generator must reach both sides, or the test checks little.
    assert!(accepted > per_seed / 10, "only {accepted} accepted");
    assert!(refused > per_seed / 10, "only {refused} refused");
}

#[test]
fn the_parse_and_parse_checked_entry_points_agree() {
    let mut rng = Rng::new(77);
    for case in 0..cases(5_000) {
        let args = random_request(&mut rng);
        let flat = without_seed(Command::parse(args.clone()));
        let checked = without_seed(Command::parse_checked(args).and_then(|inner| inner));
        assert_eq!(flat, checked, "case {case}");
    }
}

/// RANDOMKEY, HRANDFIELD, SRANDMEMBER, ZRANDMEMBER and SPOP draw a seed when parsed: the same
/// command with seed 0.
fn without_seed(parsed: Result<Command, Frame>) -> Result<Command, Frame> {
    parsed.map(|command| match command {
        Command::Read(ReadQuery::RandomKey { .. }) => Command::Read(ReadQuery::RandomKey { seed: 0 }),
        Command::Read(ReadQuery::HRandField { key, count, with_values, .. }) => {
            Command::Read(ReadQuery::HRandField { key, count, with_values, seed: 0 })
        }
        Command::Read(ReadQuery::SRandMember { key, count, .. }) => {
            Command::Read(ReadQuery::SRandMember { key, count, seed: 0 })
        }
        Command::Write(WriteOp::SPop { key, count, .. }) => {
            Command::Write(WriteOp::SPop { key, count, seed: 0 })
        }
        Command::Read(ReadQuery::ZRandMember { key, count, with_scores, .. }) => {
            Command::Read(ReadQuery::ZRandMember { key, count, with_scores, seed: 0 })
        }
        other => other,
    })
}

#[test]
fn an_empty_argument_vector_is_an_error_not_a_panic() {
    let reply = Command::parse(Vec::new()).expect_err("an empty request is refused");
    assert!(is_redis_error(&reply), "{reply:?}");
}
