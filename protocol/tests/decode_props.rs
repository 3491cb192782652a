//! Property tests of every decoder of network input in fleet-protocol:
//! job submissions (`JobSpec::decode` then `validate`, as intake runs
//! them), agent events (`AgentEvent::decode(subject, body)`, as the
//! balancer runs it), assignments and control messages (as the agent
//! decodes them: `serde_json::from_slice`), and `JobResult` (as the
//! producer client decodes it).
//!
//! The last invariant of docs/ARCHITECTURE.md: bad input gets a clear
//! error, never a panic.
//! So for each decoder, with thousands of generated cases:
//! - arbitrary bytes (and, for events, arbitrary subjects) never panic;
//!   they give a typed error or a value, and a value obeys what the
//!   decoder promises (a decoded event's subject names its type and the
//!   body's agent; a validated job passes every rule);
//! - every generated valid value round-trips: encode, decode, same value;
//! - mutations of a valid encoding are refused with an error: truncation,
//!   a wrong JSON type in a field, numbers too large for their field,
//!   nesting past serde_json's recursion limit (and, for a job's args,
//!   past `MAX_ARGS_DEPTH`), unknown fields where the type denies them;
//!   byte flips never panic;
//! - an event whose subject and body name different agents is always
//!   refused as `agent_mismatch`;
//! - refusals are named: every reason is a short snake_case token with a
//!   message; bytes that are not UTF-8 are `not_utf8`, oversized ones
//!   `too_large`, and a wrong value in a submission's id, kind, priority,
//!   timeout_ms, max_attempts or reward names that field's reason.
//!
//! Only `JobSpec` and `Requirements` deny unknown fields; the other wire
//! types are tolerant readers (serde's default), so for them an unknown
//! field is checked to be ignored rather than refused.

use fleet_protocol::capabilities::GpuInfo;
use fleet_protocol::event::BadEvent;
use fleet_protocol::workload::{self, KNOWN_KINDS};
use fleet_protocol::{
    defaults, is_valid_token, subjects, AgentEvent, Assignment, AssignmentBatch, AttemptOutcome,
    AttemptRecord, Capabilities, Completed, ControlMessage, Failed, GpuStatus, Heartbeat,
    InvalidJob, JobResult, JobSpec, JobState, Priority, Register, Requirements, RunningJob,
    Started, Timing,
};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::sample::select;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

// ---------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------

/// A valid id: one subject token of `[A-Za-z0-9_-]`.
fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{1,24}"
}

/// Any short string, control characters, quotes and non-ASCII included.
fn text() -> impl Strategy<Value = String> {
    prop_oneof!["\\PC{0,16}", "[\"\\\\\u{0}-\u{1f}\u{7f}é😀.*> ]{0,8}",]
}

/// A float that serde_json's default (not `float_roundtrip`) parser reads
/// back exactly: a small dyadic fraction, exact in f32 and f64 and short
/// in decimal. (Arbitrary f64s can come back one ulp off by design of
/// that parser; that is serde_json's documented trade-off, not fleet's.)
fn float() -> impl Strategy<Value = f64> {
    (any::<i16>(), 0..=8i32).prop_map(|(m, k)| f64::from(m) / f64::from(1u16 << k))
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        float().prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 24, 5, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..5).prop_map(Value::Array),
            btree_map(text(), inner, 0..5).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn priority() -> impl Strategy<Value = Priority> {
    select(Priority::ALL.to_vec())
}

fn kind() -> impl Strategy<Value = String> {
    select(KNOWN_KINDS.to_vec()).prop_map(str::to_string)
}

/// Requirements that pass `validate` for a job of `kind`.
fn requirements(kind: String) -> impl Strategy<Value = Requirements> {
    (
        proptest::option::of(0..=64u32),
        proptest::option::of(any::<u64>()),
        proptest::option::of((0..100u32, 0..10u32)),
        vec("[a-z0-9-]{1,64}", 0..3),
    )
        .prop_map(move |(gpus, mem, cc, tags)| {
            let mut gpus = gpus;
            if workload::needs_gpu(&kind) && gpus == Some(0) {
                gpus = Some(1);
            }
            Requirements {
                gpus,
                gpu_mem_mb: if gpus == Some(0) { None } else { mem },
                compute_capability: cc.map(|(a, b)| format!("{a}.{b}")),
                tags,
            }
        })
}

/// A submission that passes `validate`.
/// Arguments `validate` accepts for `kind`: any JSON for kinds the
/// balancer does not check, well-formed ones for those it does.
fn valid_args(kind: &str) -> BoxedStrategy<Value> {
    use fleet_protocol::workload_args::cuda_sizes::{MAX_DIM, MAX_N};
    match kind {
        "cuda.vector_add" | "cuda.reduce_sum" => (1..=MAX_N).prop_map(|n| json!({"n": n})).boxed(),
        "cuda.saxpy" => (1..=MAX_N, proptest::option::of(float()))
            .prop_map(|(n, a)| match a {
                Some(a) => json!({"n": n, "a": a}),
                None => json!({"n": n}),
            })
            .boxed(),
        "cuda.matmul" => (
            1..=MAX_DIM,
            1..=MAX_DIM,
            1..=MAX_DIM,
            select(vec!["f32", "f16", "bf16"]),
        )
            .prop_map(|(m, n, k, dtype)| json!({"m": m, "n": n, "k": k, "dtype": dtype}))
            .boxed(),
        "cuda.kernel" => (
            1..=1024u64,
            1..=1024u64,
            1..=4096u64,
            "[a-z_][a-z0-9_]{0,20}",
        )
            .prop_map(|(grid, block, len, entry)| {
                json!({"source": "extern \"C\" __global__ void k() {}", "entry": entry,
                       "grid": [grid], "block": [block],
                       "args": [{"scalar": "u32", "value": len},
                                {"buffer": "x", "dtype": "f32", "len": len, "init": "random"}],
                       "outputs": ["x"]})
            })
            .boxed(),
        "exec" => ("(/[a-z0-9._-]{1,12}){1,4}", vec("[^\u{0}]{0,16}", 0..4))
            .prop_map(|(command, args)| json!({"command": command, "args": args}))
            .boxed(),
        _ => json_value().boxed(),
    }
}

fn valid_spec() -> impl Strategy<Value = JobSpec> {
    kind().prop_flat_map(|kind| {
        (
            proptest::option::of("[A-Za-z0-9_-]{1,128}"),
            Just(kind.clone()),
            valid_args(&kind),
            proptest::option::of(priority()),
            proptest::option::of(float().prop_map(f64::abs)),
            proptest::option::of(1..=defaults::MAX_JOB_TIMEOUT.as_millis() as u64),
            proptest::option::of(1..=defaults::MAX_MAX_ATTEMPTS),
            requirements(kind),
        )
            .prop_map(
                |(id, kind, args, priority, reward, timeout_ms, max_attempts, requires)| JobSpec {
                    id,
                    kind,
                    args,
                    priority,
                    reward,
                    timeout_ms,
                    max_attempts,
                    requires,
                },
            )
    })
}

fn running_job() -> impl Strategy<Value = RunningJob> {
    (token(), any::<u32>()).prop_map(|(job_id, attempt)| RunningJob { job_id, attempt })
}

fn gpu_info() -> impl Strategy<Value = GpuInfo> {
    (
        any::<u32>(),
        text(),
        any::<u64>(),
        text(),
        proptest::option::of(float()),
        proptest::option::of(float()),
    )
        .prop_map(
            |(index, name, memory_mb, compute_capability, gemm_tflops, memory_gb_per_s)| GpuInfo {
                index,
                name,
                memory_mb,
                compute_capability,
                gemm_tflops,
                memory_gb_per_s,
            },
        )
}

fn capabilities() -> impl Strategy<Value = Capabilities> {
    (
        any::<u32>(),
        any::<u64>(),
        vec(gpu_info(), 0..3),
        proptest::option::of(any::<i32>()),
        vec(text(), 0..3),
        vec(text(), 0..3),
    )
        .prop_map(
            |(cpus, memory_mb, gpus, cuda_driver, kinds, tags)| Capabilities {
                cpus,
                memory_mb,
                gpus,
                cuda_driver,
                kinds,
                tags,
            },
        )
}

fn gpu_status() -> impl Strategy<Value = GpuStatus> {
    (
        any::<u32>(),
        proptest::option::of(any::<u64>()),
        proptest::option::of(float().prop_map(|f| f as f32)),
        proptest::option::of(float().prop_map(|f| f as f32)),
    )
        .prop_map(
            |(index, free_mb, temperature_c, utilization_pct)| GpuStatus {
                index,
                free_mb,
                temperature_c,
                utilization_pct,
            },
        )
}

/// A well-formed event whose body names `agent` (any string: the decoder
/// must compare it to the subject whatever it is).
fn event_for(agent: impl Strategy<Value = String>) -> impl Strategy<Value = AgentEvent> {
    agent.prop_flat_map(|agent_id| {
        let a = Just(agent_id);
        prop_oneof![
            (
                a.clone(),
                text(),
                any::<u32>(),
                any::<u32>(),
                capabilities()
            )
                .prop_map(|(agent_id, incarnation, slots, prefetch, capabilities)| {
                    AgentEvent::Register(Register {
                        agent_id,
                        incarnation,
                        slots,
                        prefetch,
                        capabilities,
                    })
                }),
            (
                a.clone(),
                text(),
                vec(running_job(), 0..4),
                vec(running_job(), 0..3),
                vec(running_job(), 0..3),
                vec(gpu_status(), 0..3),
                any::<bool>(),
            )
                .prop_map(
                    |(agent_id, incarnation, running, waiting, finishing, gpus, stopping)| {
                        AgentEvent::Heartbeat(Heartbeat {
                            agent_id,
                            incarnation,
                            running,
                            waiting,
                            finishing,
                            gpus,
                            stopping,
                        })
                    }
                ),
            (a.clone(), token(), any::<u32>(), any::<u32>()).prop_map(
                |(agent_id, job_id, attempt, running)| {
                    AgentEvent::Started(Started {
                        agent_id,
                        job_id,
                        attempt,
                        running,
                    })
                }
            ),
            (
                a.clone(),
                token(),
                any::<u32>(),
                json_value(),
                any::<u64>(),
                proptest::option::of(any::<u64>())
            )
                .prop_map(
                    |(agent_id, job_id, attempt, result, duration_ms, started_at_us)| {
                        AgentEvent::Completed(Completed {
                            agent_id,
                            job_id,
                            attempt,
                            result,
                            duration_ms,
                            started_at_us,
                        })
                    }
                ),
            (
                a,
                token(),
                any::<u32>(),
                text(),
                any::<u64>(),
                any::<bool>()
            )
                .prop_map(
                    |(agent_id, job_id, attempt, error, duration_ms, handed_back)| {
                        AgentEvent::Failed(Failed {
                            agent_id,
                            job_id,
                            attempt,
                            error,
                            duration_ms,
                            handed_back,
                        })
                    }
                ),
        ]
    })
}

fn assignment() -> impl Strategy<Value = Assignment> {
    (
        token(),
        any::<u32>(),
        text(),
        json_value(),
        any::<u64>(),
        vec(any::<u32>(), 0..4),
    )
        .prop_map(
            |(job_id, attempt, kind, args, timeout_ms, gpus)| Assignment {
                job_id,
                attempt,
                kind,
                args,
                timeout_ms,
                gpus,
            },
        )
}

fn batch() -> impl Strategy<Value = AssignmentBatch> {
    vec(assignment(), 0..4).prop_map(|assignments| AssignmentBatch { assignments })
}

fn control() -> impl Strategy<Value = ControlMessage> {
    prop_oneof![
        text().prop_map(|incarnation| ControlMessage::Register { incarnation }),
        (token(), any::<u32>())
            .prop_map(|(job_id, attempt)| ControlMessage::Cancel { job_id, attempt }),
    ]
}

fn job_state() -> impl Strategy<Value = JobState> {
    select(vec![
        JobState::Queued,
        JobState::Assigned,
        JobState::Running,
        JobState::Succeeded,
        JobState::Dead,
        JobState::Cancelled,
    ])
}

fn attempt_outcome() -> impl Strategy<Value = AttemptOutcome> {
    select(vec![
        AttemptOutcome::Succeeded,
        AttemptOutcome::Failed,
        AttemptOutcome::Cancelled,
        AttemptOutcome::Moved,
    ])
}

fn attempt_record() -> impl Strategy<Value = AttemptRecord> {
    (
        any::<u32>(),
        text(),
        attempt_outcome(),
        proptest::option::of(text()),
        any::<u64>(),
    )
        .prop_map(
            |(attempt, agent_id, outcome, error, duration_ms)| AttemptRecord {
                attempt,
                agent_id,
                outcome,
                error,
                duration_ms,
            },
        )
}

/// A job result. `result` is never `Some(Value::Null)`: that encodes as
/// an absent result and decodes as `None` (see the note at the end of
/// this file).
fn job_result() -> impl Strategy<Value = JobResult> {
    (
        token(),
        job_state(),
        proptest::option::of(json_value().prop_filter("null result", |v| !v.is_null())),
        proptest::option::of(text()),
        proptest::option::of(token()),
        vec(attempt_record(), 0..4),
        any::<u64>(),
        proptest::option::of((
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            proptest::option::of(any::<u64>()),
            proptest::option::of(any::<u64>()),
            proptest::option::of(any::<u64>()),
        )),
    )
        .prop_map(
            |(job_id, state, result, error, agent_id, attempts, finished_at_ms, timing)| {
                JobResult {
                    job_id,
                    state,
                    result,
                    error,
                    agent_id,
                    attempts,
                    finished_at_ms,
                    timing: timing.map(|(s, a, t, a_us, t_us, g_us)| Timing {
                        submitted_at_ms: s,
                        assigned_at_ms: a,
                        started_at_ms: t,
                        assigned_at_us: a_us,
                        started_at_us: t_us,
                        agent_started_at_us: g_us,
                    }),
                }
            },
        )
}

/// Bytes that look like JSON often enough to reach deep into the parser
/// and the typed visitors: a soup of tokens, field names and values that
/// the wire types use.
fn json_soup() -> impl Strategy<Value = Vec<u8>> {
    const TOKENS: &[&str] = &[
        "{",
        "}",
        "[",
        "]",
        ":",
        ",",
        " ",
        "\"",
        "null",
        "true",
        "false",
        "0",
        "1",
        "-1",
        "1.5",
        "1e400",
        "-0",
        "4294967296",
        "18446744073709551616",
        "\"x\"",
        "\"sleep\"",
        "\"echo\"",
        "\"a1\"",
        "\"j1\"",
        "\"kind\"",
        "\"id\"",
        "\"args\"",
        "\"priority\"",
        "\"urgent\"",
        "\"reward\"",
        "\"timeout_ms\"",
        "\"max_attempts\"",
        "\"requires\"",
        "\"gpus\"",
        "\"tags\"",
        "\"agent_id\"",
        "\"job_id\"",
        "\"attempt\"",
        "\"running\"",
        "\"result\"",
        "\"error\"",
        "\"duration_ms\"",
        "\"incarnation\"",
        "\"slots\"",
        "\"capabilities\"",
        "\"cpus\"",
        "\"memory_mb\"",
        "\"assignments\"",
        "\"op\"",
        "\"cancel\"",
        "\"register\"",
        "\"state\"",
        "\"succeeded\"",
        "\"attempts\"",
        "\"finished_at_ms\"",
        "\"\\u0000\"",
        "\"\\ud800\"",
        "\\",
        "\u{0}",
        "\u{ff}",
    ];
    vec(select(TOKENS), 0..64).prop_map(|t| t.concat().into_bytes())
}

/// Raw bytes, or JSON-looking soup.
fn junk() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![vec(any::<u8>(), 0..256), json_soup()]
}

/// Subjects: mostly near-misses of `fleet.events.<type>.<agent>`.
fn junk_subject() -> impl Strategy<Value = String> {
    const PARTS: &[&str] = &[
        "fleet",
        "events",
        "register",
        "heartbeat",
        "started",
        "completed",
        "failed",
        "a1",
        "a2",
        "",
        ".",
        "*",
        ">",
        "a b",
        "é",
        "FLEET",
        "x-y_z",
        "\u{0}",
    ];
    prop_oneof![
        any::<String>(),
        vec(select(PARTS), 0..7).prop_map(|p| p.join(".")),
        (select(PARTS), select(PARTS)).prop_map(|(k, a)| format!("fleet.events.{k}.{a}")),
    ]
}

// ---------------------------------------------------------------------
// Mutations
// ---------------------------------------------------------------------

/// The JSON type a field accepts, for choosing values it must refuse.
#[derive(Debug, Clone, Copy)]
enum Ty {
    /// A required string.
    Str,
    /// `Option<String>`: null is fine.
    OptStr,
    U32,
    OptU32,
    U64,
    OptU64,
    OptF64,
    /// A struct (required, or `#[serde(default)]`: null is refused).
    Obj,
    /// `Option<struct>`.
    OptObj,
    /// A `Vec`, required or defaulted (null is refused).
    Vec,
    /// A unit-variant enum named by a string (required).
    Enum,
    /// An optional such enum.
    OptEnum,
}

/// Values that a field of type `ty` must refuse.
fn wrong_values(ty: Ty) -> Vec<Value> {
    let big_u32 = json!(u64::from(u32::MAX) + 1);
    // 2^64 does not fit u64; serde_json reads it as a float.
    let big_u64: Value = serde_json::from_str("18446744073709551616").unwrap_or(Value::Null);
    let mut out = match ty {
        Ty::Str | Ty::OptStr => vec![json!(1), json!(true), json!([]), json!({})],
        Ty::U32 | Ty::OptU32 => vec![
            json!("1"),
            json!(true),
            json!([]),
            json!({}),
            json!(-1),
            json!(1.5),
            big_u32,
        ],
        Ty::U64 | Ty::OptU64 => vec![
            json!("1"),
            json!(true),
            json!([]),
            json!({}),
            json!(-1),
            json!(1.5),
            big_u64,
        ],
        Ty::OptF64 => vec![json!("1"), json!(true), json!([]), json!({})],
        // No arrays: serde's derive also reads a struct from an array of
        // its fields in order (see the note at the end of this file).
        Ty::Obj | Ty::OptObj => vec![json!("x"), json!(1), json!(true)],
        Ty::Vec => vec![json!("x"), json!(1), json!(true), json!({})],
        Ty::Enum | Ty::OptEnum => vec![
            json!("no_such_variant"),
            json!(""),
            json!(1),
            json!(true),
            json!([]),
            json!({}),
        ],
    };
    if matches!(
        ty,
        Ty::Str | Ty::U32 | Ty::U64 | Ty::Obj | Ty::Vec | Ty::Enum
    ) {
        out.push(Value::Null);
    }
    // Long values of many-byte characters, for error messages that quote
    // (and cut) the offending value.
    let long = "é😀".repeat(40);
    match ty {
        Ty::Str | Ty::OptStr => out.push(json!([long])),
        Ty::Obj | Ty::OptObj => {}
        _ => out.push(json!(long)),
    }
    out
}

/// The reason intake gives for a wrong value in each top-level field it
/// names (the others are `malformed`).
const JOB_FIELD_REASONS: &[(&str, Ty, &str)] = &[
    ("/id", Ty::OptStr, "bad_id"),
    ("/kind", Ty::Str, "unknown_kind"),
    ("/priority", Ty::OptEnum, "bad_priority"),
    ("/timeout_ms", Ty::OptU64, "bad_timeout"),
    ("/max_attempts", Ty::OptU32, "bad_max_attempts"),
    ("/reward", Ty::OptF64, "bad_reward"),
];

/// Numbers too large for a numeric field (as JSON text, since 1e400 is
/// no f64).
fn huge_numbers(ty: Ty) -> &'static [&'static str] {
    match ty {
        Ty::U32 | Ty::OptU32 => &["4294967296", "18446744073709551616", "1e400", "-1e400"],
        Ty::U64 | Ty::OptU64 => &["18446744073709551616", "1e20", "1e400", "-1"],
        Ty::OptF64 => &["1e400", "-1e400", "1e999999"],
        _ => &[],
    }
}

/// Sets the member at JSON pointer `pointer` (`/a/0/b`), creating missing
/// object members on the way. False where the path does not exist (an
/// index past the end of an array, or a scalar on the way).
fn set_pointer(doc: &mut Value, pointer: &str, value: Value) -> bool {
    let segments: Vec<&str> = pointer.split('/').skip(1).collect();
    let Some((last, path)) = segments.split_last() else {
        *doc = value;
        return true;
    };
    let mut at = doc;
    for seg in path {
        at = match at {
            Value::Object(map) => map.entry(seg.to_string()).or_insert_with(|| json!({})),
            Value::Array(items) => match seg.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match at {
        Value::Object(map) => {
            map.insert(last.to_string(), value);
            true
        }
        Value::Array(items) => match last.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
            Some(v) => {
                *v = value;
                true
            }
            None => false,
        },
        _ => false,
    }
}

/// `depth` nested arrays and objects around a scalar.
fn nested(depth: usize, objects: bool) -> String {
    let mut s = String::with_capacity(depth * 6 + 1);
    for i in 0..depth {
        s.push_str(if objects && i % 2 == 1 {
            "{\"k\":"
        } else {
            "["
        });
    }
    s.push('1');
    for i in (0..depth).rev() {
        s.push(if objects && i % 2 == 1 { '}' } else { ']' });
    }
    s
}

/// The document `doc` with the member at `pointer` replaced by the raw
/// JSON text `raw` (which may be no valid `Value`, e.g. `1e400`). None
/// where the path does not exist.
fn with_raw(doc: &Value, pointer: &str, raw: &str) -> Option<Vec<u8>> {
    const MARK: &str = "__fleet_raw_marker__";
    let mut doc = doc.clone();
    if !set_pointer(&mut doc, pointer, json!(MARK)) {
        return None;
    }
    let text = doc.to_string();
    Some(text.replacen(&format!("\"{MARK}\""), raw, 1).into_bytes())
}

fn flip_bytes(mut bytes: Vec<u8>, flips: &[(usize, u8)]) -> Vec<u8> {
    if bytes.is_empty() {
        return bytes;
    }
    for &(at, mask) in flips {
        let i = at % bytes.len();
        bytes[i] ^= mask.max(1);
    }
    bytes
}

// ---------------------------------------------------------------------
// The decoders under test, each as its network consumer runs it
// ---------------------------------------------------------------------

/// Intake's path: decode, fill in the balancer's max_attempts, validate.
fn intake(payload: &[u8]) -> Result<fleet_protocol::ValidJob, InvalidJob> {
    JobSpec::decode(payload).and_then(|mut spec| {
        spec.max_attempts.get_or_insert(defaults::MAX_ATTEMPTS);
        spec.validate("fallback-id")
    })
}

/// What every job that passes intake satisfies.
fn check_valid_job(job: &fleet_protocol::ValidJob) -> Result<(), TestCaseError> {
    prop_assert!(is_valid_token(&job.id).is_ok(), "bad id {:?}", job.id);
    prop_assert!(workload::is_known(&job.kind));
    prop_assert!((1..=defaults::MAX_MAX_ATTEMPTS).contains(&job.max_attempts));
    prop_assert!(job.timeout > std::time::Duration::ZERO);
    prop_assert!(job.timeout <= defaults::MAX_JOB_TIMEOUT);
    prop_assert!(!job.args.is_null());
    prop_assert!(json_depth(&job.args) <= defaults::MAX_ARGS_DEPTH);
    Ok(())
}

fn json_depth(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(json_depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(json_depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// A clear, typed refusal: a short stable reason (a snake_case token,
/// for counters) and a message. The reasons themselves grow with the
/// protocol, so they are checked for form here, not listed.
fn is_clear(reason: &str, message: &str) -> bool {
    !reason.is_empty()
        && reason.len() <= 32
        && reason
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !message.trim().is_empty()
}

fn is_job_reason(e: &InvalidJob) -> bool {
    is_clear(e.reason(), &e.to_string())
}

fn is_event_reason(e: &BadEvent) -> bool {
    is_clear(e.reason(), &e.to_string())
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, TestCaseError> {
    serde_json::to_vec(value).map_err(|e| TestCaseError::fail(format!("cannot encode: {e}")))
}

fn to_value<T: Serialize>(value: &T) -> Result<Value, TestCaseError> {
    serde_json::to_value(value).map_err(|e| TestCaseError::fail(format!("cannot encode: {e}")))
}

/// An accepted event is exactly what its subject says: the subject is
/// `fleet.events.<its type>.<its body's agent>`, and that agent is a
/// valid id.
fn check_event(subject: &str, event: &AgentEvent) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        subject,
        subjects::event(event.type_name(), event.agent_id())
    );
    prop_assert!(is_valid_token(event.agent_id()).is_ok());
    // What was accepted can be sent again.
    let body = event
        .to_json()
        .map_err(|e| TestCaseError::fail(format!("cannot encode: {e}")))?;
    prop_assert!(AgentEvent::decode(subject, &body).is_ok());
    Ok(())
}

fn event_subject(event: &AgentEvent) -> String {
    subjects::event(event.type_name(), event.agent_id())
}

/// The fields of each event type's body, and their JSON types.
fn event_fields(event: &AgentEvent) -> &'static [(&'static str, Ty)] {
    match event {
        AgentEvent::Register(_) => &[
            ("/agent_id", Ty::Str),
            ("/incarnation", Ty::Str),
            ("/slots", Ty::U32),
            ("/prefetch", Ty::U32),
            ("/capabilities", Ty::Obj),
            ("/capabilities/cpus", Ty::U32),
            ("/capabilities/memory_mb", Ty::U64),
            ("/capabilities/gpus", Ty::Vec),
            ("/capabilities/kinds", Ty::Vec),
            ("/capabilities/tags", Ty::Vec),
        ],
        AgentEvent::Heartbeat(_) => &[
            ("/agent_id", Ty::Str),
            ("/incarnation", Ty::Str),
            ("/running", Ty::Vec),
            ("/waiting", Ty::Vec),
            ("/finishing", Ty::Vec),
            ("/gpus", Ty::Vec),
            ("/running/0/job_id", Ty::Str),
            ("/running/0/attempt", Ty::U32),
        ],
        AgentEvent::Started(_) => &[
            ("/agent_id", Ty::Str),
            ("/job_id", Ty::Str),
            ("/attempt", Ty::U32),
            ("/running", Ty::U32),
        ],
        AgentEvent::Completed(_) => &[
            ("/agent_id", Ty::Str),
            ("/job_id", Ty::Str),
            ("/attempt", Ty::U32),
            ("/duration_ms", Ty::U64),
        ],
        AgentEvent::Failed(_) => &[
            ("/agent_id", Ty::Str),
            ("/job_id", Ty::Str),
            ("/attempt", Ty::U32),
            ("/error", Ty::Str),
            ("/duration_ms", Ty::U64),
        ],
    }
}

const JOB_FIELDS: &[(&str, Ty)] = &[
    ("/id", Ty::OptStr),
    ("/kind", Ty::Str),
    ("/priority", Ty::OptEnum),
    ("/reward", Ty::OptF64),
    ("/timeout_ms", Ty::OptU64),
    ("/max_attempts", Ty::OptU32),
    ("/requires", Ty::Obj),
    ("/requires/gpus", Ty::OptU32),
    ("/requires/gpu_mem_mb", Ty::OptU64),
    ("/requires/compute_capability", Ty::OptStr),
    ("/requires/tags", Ty::Vec),
];

const ASSIGNMENT_FIELDS: &[(&str, Ty)] = &[
    ("/assignments", Ty::Vec),
    ("/assignments/0/job_id", Ty::Str),
    ("/assignments/0/attempt", Ty::U32),
    ("/assignments/0/kind", Ty::Str),
    ("/assignments/0/timeout_ms", Ty::U64),
    ("/assignments/0/gpus", Ty::Vec),
];

const CONTROL_FIELDS: &[(&str, Ty)] = &[
    ("/op", Ty::Enum),
    ("/incarnation", Ty::Str),
    ("/job_id", Ty::Str),
    ("/attempt", Ty::U32),
];

const RESULT_FIELDS: &[(&str, Ty)] = &[
    ("/job_id", Ty::Str),
    ("/state", Ty::Enum),
    ("/error", Ty::OptStr),
    ("/agent_id", Ty::OptStr),
    ("/attempts", Ty::Vec),
    ("/finished_at_ms", Ty::U64),
    ("/timing", Ty::OptObj),
    ("/timing/submitted_at_ms", Ty::U64),
    ("/attempts/0/attempt", Ty::U32),
    ("/attempts/0/agent_id", Ty::Str),
    ("/attempts/0/outcome", Ty::Enum),
    ("/attempts/0/error", Ty::OptStr),
    ("/attempts/0/duration_ms", Ty::U64),
];

/// Whether `pointer` names a member the document (or its struct) has:
/// array elements must exist, and a field of a control message must
/// belong to its variant.
fn applies(doc: &Value, pointer: &str) -> bool {
    if let Some(op) = doc.get("op").and_then(Value::as_str) {
        let fields: &[&str] = match op {
            "register" => &["/op", "/incarnation"],
            _ => &["/op", "/job_id", "/attempt"],
        };
        if !fields.contains(&pointer) {
            return false;
        }
    }
    // Every array element on the path must exist.
    let segments: Vec<&str> = pointer.split('/').skip(1).collect();
    let mut at = Some(doc);
    for seg in &segments[..segments.len().saturating_sub(1)] {
        at = match at {
            Some(Value::Array(items)) => seg.parse::<usize>().ok().and_then(|i| items.get(i)),
            Some(Value::Object(map)) => map.get(*seg).or(Some(&Value::Null)),
            _ => None,
        };
        if matches!(at, Some(Value::Null)) {
            // A missing optional struct: set_pointer creates it.
            return !segments.iter().any(|s| s.parse::<usize>().is_ok());
        }
    }
    at.is_some()
}

/// Runs `decode` on every wrong-typed and too-large value for the field
/// chosen by `pick` in `doc`, and on the document nested past the
/// recursion limit there; each must be refused. A field whose path does
/// not exist in this document is skipped.
fn refuses_bad_fields(
    doc: &Value,
    fields: &[(&str, Ty)],
    pick: usize,
    depth: usize,
    decode: &dyn Fn(&[u8]) -> Result<(), String>,
) -> Result<(), TestCaseError> {
    let (pointer, ty) = fields[pick % fields.len()];
    if !applies(doc, pointer) {
        return Ok(());
    }
    for wrong in wrong_values(ty) {
        let mut bad = doc.clone();
        if set_pointer(&mut bad, pointer, wrong.clone()) {
            let bytes = encode(&bad)?;
            prop_assert!(
                decode(&bytes).is_err(),
                "{pointer} = {wrong} was accepted in {bad}"
            );
        }
    }
    for raw in huge_numbers(ty) {
        if let Some(bytes) = with_raw(doc, pointer, raw) {
            prop_assert!(
                decode(&bytes).is_err(),
                "{pointer} = {raw} was accepted in {}",
                String::from_utf8_lossy(&bytes)
            );
        }
    }
    // Past serde_json's recursion limit (128), in any field.
    for objects in [false, true] {
        if let Some(bytes) = with_raw(doc, pointer, &nested(depth, objects)) {
            prop_assert!(
                decode(&bytes).is_err(),
                "{pointer} nested {depth} deep accepted"
            );
        }
    }
    Ok(())
}

/// Every strict prefix of a JSON object's text is refused.
fn refuses_truncation(
    bytes: &[u8],
    cut: usize,
    decode: &dyn Fn(&[u8]) -> Result<(), String>,
) -> Result<(), TestCaseError> {
    let cut = cut % bytes.len().max(1);
    prop_assert!(
        decode(&bytes[..cut]).is_err(),
        "prefix {:?} was accepted",
        String::from_utf8_lossy(&bytes[..cut])
    );
    Ok(())
}

/// A tolerant reader: an unknown top-level field is ignored, however big
/// or deep it is, and the value decodes as before.
fn ignores_unknown_field<T>(value: &T, name: &str, extra: Value) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let mut doc = to_value(value)?;
    let Value::Object(map) = &mut doc else {
        return Err(TestCaseError::fail("not an object"));
    };
    if map.contains_key(name) {
        return Ok(());
    }
    map.insert(name.to_string(), extra);
    let decoded: Option<T> = serde_json::from_slice(&encode(&doc)?).ok();
    prop_assert_eq!(decoded.as_ref(), Some(value));
    Ok(())
}

fn typed<T: DeserializeOwned>(bytes: &[u8]) -> Result<(), String> {
    serde_json::from_slice::<T>(bytes)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn cfg(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------
// Job submissions
// ---------------------------------------------------------------------

proptest! {
    #![proptest_config(cfg(2000))]

    #[test]
    fn job_junk_never_panics(bytes in junk()) {
        match intake(&bytes) {
            Ok(job) => check_valid_job(&job)?,
            Err(e) => prop_assert!(is_job_reason(&e), "{e:?}"),
        }
        // Bytes that are not text are named as such.
        if std::str::from_utf8(&bytes).is_err() {
            prop_assert_eq!(JobSpec::decode(&bytes).err().map(|e| e.reason()), Some("not_utf8"));
        }
        // decode alone, then validate with the producer's own
        // max_attempts (absent → the default).
        if let Ok(spec) = JobSpec::decode(&bytes) {
            if let Ok(job) = spec.validate("x") {
                check_valid_job(&job)?;
            }
        }
    }

    #[test]
    fn valid_jobs_round_trip(spec in valid_spec()) {
        let bytes = encode(&spec)?;
        let decoded = JobSpec::decode(&bytes);
        prop_assert_eq!(decoded.as_ref(), Ok(&spec));
        let job = intake(&bytes);
        prop_assert!(job.is_ok(), "{:?} refused: {:?}", spec, job);
        if let Ok(job) = job {
            check_valid_job(&job)?;
            prop_assert_eq!(&job.id, spec.id.as_deref().unwrap_or("fallback-id"));
            prop_assert_eq!(job.max_attempts, spec.max_attempts.unwrap_or(defaults::MAX_ATTEMPTS));
            prop_assert_eq!(job.timeout_given, spec.timeout_ms.is_some());
            prop_assert_eq!(&job.requires, &spec.requires);
            if let Some(p) = spec.priority {
                prop_assert_eq!(job.priority, p);
            }
        }
    }

    /// Any JSON as a checked kind's arguments: refused as `bad_args`
    /// exactly when the shared check (the agent's own parser) refuses it,
    /// and never a panic.
    #[test]
    fn arbitrary_args_of_checked_kinds_are_refused_as_bad_args_or_accepted(
        spec in valid_spec(),
        kind in select(vec!["cuda.vector_add", "cuda.saxpy", "cuda.reduce_sum", "cuda.matmul", "cuda.kernel", "exec"]),
        args in json_value(),
    ) {
        let spec = JobSpec { kind: kind.to_string(), args: args.clone(), requires: Requirements::default(), ..spec };
        let verdict = fleet_protocol::workload_args::check(kind, &args);
        let got = spec.validate("fallback-id");
        match (&verdict, &got) {
            (Err(why), Err(e)) => {
                prop_assert_eq!(e.reason(), "bad_args");
                prop_assert_eq!(e.to_string(), why.to_string());
            }
            (Ok(()), Ok(_)) => {}
            _ => prop_assert!(false, "check {:?} but validate {:?}", verdict, got.map(|j| j.id)),
        }
    }

    #[test]
    fn job_args_nesting_is_bounded(
        spec in valid_spec(),
        depth in (defaults::MAX_ARGS_DEPTH + 1)..=126,
        objects in any::<bool>(),
    ) {
        // Within serde_json's limit the spec decodes, but validate
        // refuses args deeper than MAX_ARGS_DEPTH.
        let doc = to_value(&spec)?;
        let bytes = with_raw(&doc, "/args", &nested(depth, objects));
        prop_assert!(bytes.is_some());
        if let Some(bytes) = bytes {
            prop_assert!(JobSpec::decode(&bytes).is_ok());
            prop_assert_eq!(intake(&bytes).err().map(|e| e.reason()), Some("too_deep"));
        }
    }

    #[test]
    fn job_out_of_range_numbers_are_refused(
        spec in valid_spec(),
        timeout_ms in prop_oneof![Just(0), (defaults::MAX_JOB_TIMEOUT.as_millis() as u64 + 1)..],
        max_attempts in prop_oneof![Just(0), (defaults::MAX_MAX_ATTEMPTS + 1)..],
        gpus in 65u32..,
    ) {
        // Numbers that fit their type but not the rules: a typed error
        // from validate, never a wrap-around.
        let cases = [
            (JobSpec { timeout_ms: Some(timeout_ms), ..spec.clone() }, "bad_timeout"),
            (JobSpec { max_attempts: Some(max_attempts), ..spec.clone() }, "bad_max_attempts"),
            (
                JobSpec {
                    requires: Requirements { gpus: Some(gpus), ..spec.requires.clone() },
                    ..spec.clone()
                },
                "bad_requirements",
            ),
        ];
        for (bad, reason) in cases {
            let got = intake(&encode(&bad)?);
            prop_assert_eq!(got.err().map(|e| e.reason()), Some(reason));
        }
    }
}

proptest! {
    // Heavier: larger generated values, or a dozen decodes per case.
    #![proptest_config(cfg(1000))]

    #[test]
    fn job_mutations_are_refused(
        spec in valid_spec(),
        cut in any::<usize>(),
        pick in any::<usize>(),
        depth in 130usize..400,
        name in "[a-z_]{1,12}",
        extra in json_value(),
    ) {
        let bytes = encode(&spec)?;
        let decode = |b: &[u8]| intake(b).map(|_| ()).map_err(|e| e.to_string());
        refuses_truncation(&bytes, cut, &decode)?;
        let doc = to_value(&spec)?;
        refuses_bad_fields(&doc, JOB_FIELDS, pick, depth, &decode)?;
        // A wrong value in a field the producer can fix is named.
        let (pointer, ty, reason) = JOB_FIELD_REASONS[pick % JOB_FIELD_REASONS.len()];
        for wrong in wrong_values(ty).into_iter().filter(|v| !v.is_null()) {
            let mut bad = doc.clone();
            prop_assert!(set_pointer(&mut bad, pointer, wrong.clone()));
            let got = JobSpec::decode(&encode(&bad)?);
            prop_assert_eq!(
                got.as_ref().err().map(InvalidJob::reason),
                Some(reason),
                "{} = {}: {:?}",
                pointer,
                wrong,
                got
            );
        }
        // Unknown fields are refused, at the top and in requires.
        for pointer in [format!("/{name}"), format!("/requires/{name}")] {
            let known = ["id", "kind", "args", "priority", "reward", "timeout_ms",
                "max_attempts", "requires", "gpus", "gpu_mem_mb", "compute_capability", "tags"];
            if known.contains(&name.as_str()) {
                continue;
            }
            let mut bad = doc.clone();
            prop_assert!(set_pointer(&mut bad, &pointer, extra.clone()));
            let refused = JobSpec::decode(&encode(&bad)?);
            prop_assert_eq!(refused.err().map(|e| e.reason()), Some("malformed"), "{}", pointer);
        }
    }

    #[test]
    fn job_byte_flips_never_panic(
        spec in valid_spec(),
        flips in vec((any::<usize>(), any::<u8>()), 1..4),
    ) {
        let bytes = flip_bytes(encode(&spec)?, &flips);
        match intake(&bytes) {
            Ok(job) => check_valid_job(&job)?,
            Err(e) => prop_assert!(is_job_reason(&e), "{e:?}"),
        }
    }
}

proptest! {
    #![proptest_config(cfg(16))]

    #[test]
    fn oversized_submissions_are_refused_unread(extra in 1usize..4096, fill in any::<u8>()) {
        let big = vec![fill; defaults::MAX_JOB_BYTES + extra];
        prop_assert_eq!(JobSpec::decode(&big).err().map(|e| e.reason()), Some("too_large"));
        let big = vec![fill; defaults::MAX_EVENT_BYTES + extra];
        let got = AgentEvent::decode("fleet.events.completed.a1", &big);
        prop_assert_eq!(got.err().map(|e| e.reason()), Some("too_large"));
    }

    #[test]
    fn pathological_nesting_never_overflows_the_stack(depth in 1_000usize..100_000) {
        // Far past the recursion limit, as a raw document: every decoder
        // refuses it without recursing that deep.
        let doc = nested(depth, false).into_bytes();
        prop_assert!(JobSpec::decode(&doc).is_err());
        for subject in ["fleet.events.started.a1", "fleet.events.completed.a1"] {
            prop_assert!(AgentEvent::decode(subject, &doc).is_err());
        }
        prop_assert!(typed::<AssignmentBatch>(&doc).is_err());
        prop_assert!(typed::<ControlMessage>(&doc).is_err());
        prop_assert!(typed::<JobResult>(&doc).is_err());
        let wrapped = format!(r#"{{"agent_id":"a1","job_id":"j","attempt":1,"duration_ms":1,"result":{}}}"#,
            nested(depth, true));
        prop_assert!(AgentEvent::decode("fleet.events.completed.a1", wrapped.as_bytes()).is_err());
    }
}

// ---------------------------------------------------------------------
// Agent events
// ---------------------------------------------------------------------

proptest! {
    #![proptest_config(cfg(2000))]

    #[test]
    fn event_junk_never_panics(subject in junk_subject(), bytes in junk()) {
        match AgentEvent::decode(&subject, &bytes) {
            Ok(event) => check_event(&subject, &event)?,
            Err(e) => prop_assert!(is_event_reason(&e), "{e:?}"),
        }
    }

    #[test]
    fn event_junk_body_under_a_good_subject_never_panics(
        kind in select(vec!["register", "heartbeat", "started", "completed", "failed"]),
        agent in token(),
        bytes in junk(),
    ) {
        let subject = subjects::event(kind, &agent);
        match AgentEvent::decode(&subject, &bytes) {
            Ok(event) => check_event(&subject, &event)?,
            Err(e) => prop_assert!(
                matches!(
                    e,
                    BadEvent::Malformed { .. }
                        | BadEvent::NotUtf8 { .. }
                        | BadEvent::AgentMismatch { .. }
                ) && is_event_reason(&e),
                "{e:?}"
            ),
        }
        if std::str::from_utf8(&bytes).is_err() {
            let got = AgentEvent::decode(&subject, &bytes);
            prop_assert_eq!(got.err().map(|e| e.reason()), Some("not_utf8"));
        }
    }

    #[test]
    fn good_body_under_junk_subject_never_panics(
        event in event_for(token()),
        subject in junk_subject(),
    ) {
        let body = event.to_json().map_err(|e| TestCaseError::fail(e.to_string()))?;
        match AgentEvent::decode(&subject, &body) {
            Ok(decoded) => {
                check_event(&subject, &decoded)?;
                prop_assert_eq!(decoded, event);
            }
            Err(e) => prop_assert!(is_event_reason(&e), "{e:?}"),
        }
    }

    #[test]
    fn valid_events_round_trip(event in event_for(token())) {
        let body = event.to_json().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let subject = event_subject(&event);
        prop_assert_eq!(AgentEvent::decode(&subject, &body), Ok(event));
    }

    #[test]
    fn agent_mismatch_is_always_refused(
        event in event_for(prop_oneof![token(), text()]),
        publisher in token(),
    ) {
        prop_assume!(publisher != event.agent_id());
        let body = event.to_json().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let subject = subjects::event(event.type_name(), &publisher);
        let got = AgentEvent::decode(&subject, &body);
        prop_assert_eq!(
            got.as_ref().err().map(BadEvent::reason),
            Some("agent_mismatch"),
            "{:?}",
            got
        );
    }

    #[test]
    fn event_under_another_type_is_refused(
        event in event_for(token()),
        other in select(vec!["register", "heartbeat", "started", "completed", "failed"]),
    ) {
        prop_assume!(other != event.type_name());
        let body = event.to_json().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let got = AgentEvent::decode(&subjects::event(other, event.agent_id()), &body);
        prop_assert_eq!(got.as_ref().err().map(BadEvent::reason), Some("malformed"), "{:?}", got);
    }

    #[test]
    fn event_byte_flips_never_panic(
        event in event_for(token()),
        flips in vec((any::<usize>(), any::<u8>()), 1..4),
        flip_subject in any::<bool>(),
    ) {
        let mut subject = event_subject(&event);
        let mut body = event.to_json().map_err(|e| TestCaseError::fail(e.to_string()))?;
        if flip_subject {
            subject = String::from_utf8_lossy(&flip_bytes(subject.into_bytes(), &flips)).into_owned();
        } else {
            body = flip_bytes(body, &flips);
        }
        match AgentEvent::decode(&subject, &body) {
            Ok(decoded) => check_event(&subject, &decoded)?,
            Err(e) => prop_assert!(is_event_reason(&e), "{e:?}"),
        }
    }
}

proptest! {
    // Heavier: larger generated values, or a dozen decodes per case.
    #![proptest_config(cfg(1000))]

    #[test]
    fn event_mutations_are_refused(
        event in event_for(token()),
        cut in any::<usize>(),
        pick in any::<usize>(),
        depth in 130usize..400,
        name in "[a-z_]{1,12}",
        extra in json_value(),
        deep in 130usize..5_000,
    ) {
        let subject = event_subject(&event);
        let body = event.to_json().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let decode = |b: &[u8]| AgentEvent::decode(&subject, b).map(|_| ()).map_err(|e| e.to_string());
        refuses_truncation(&body, cut, &decode)?;
        let doc: Value = serde_json::from_slice(&body).map_err(|e| TestCaseError::fail(e.to_string()))?;
        refuses_bad_fields(&doc, event_fields(&event), pick, depth, &decode)?;
        // Tolerant reader: an unknown field is ignored, even one nested
        // past the recursion limit (serde_json skips it without
        // recursing).
        if doc.get(&name).is_none() {
            let pointer = format!("/{name}");
            if let Some(bytes) = with_raw(&doc, &pointer, &nested(deep, true)) {
                prop_assert_eq!(AgentEvent::decode(&subject, &bytes), Ok(event.clone()));
            }
            let mut doc = doc;
            prop_assert!(set_pointer(&mut doc, &pointer, extra));
            prop_assert_eq!(AgentEvent::decode(&subject, &encode(&doc)?), Ok(event));
        }
    }
}

// ---------------------------------------------------------------------
// Assignments, control messages, results
// ---------------------------------------------------------------------

/// The value a tolerant decoder of `T` makes of `bytes`, checked to be
/// sendable again.
fn decodes_again<T>(bytes: &[u8]) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned,
{
    if let Ok(value) = serde_json::from_slice::<T>(bytes) {
        let again = encode(&value)?;
        prop_assert!(serde_json::from_slice::<T>(&again).is_ok());
    }
    Ok(())
}

fn round_trips<T>(value: &T) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let decoded: Option<T> = serde_json::from_slice(&encode(value)?).ok();
    prop_assert_eq!(decoded.as_ref(), Some(value));
    Ok(())
}

proptest! {
    #![proptest_config(cfg(2000))]

    #[test]
    fn agent_and_producer_junk_never_panics(bytes in junk()) {
        decodes_again::<AssignmentBatch>(&bytes)?;
        decodes_again::<Assignment>(&bytes)?;
        decodes_again::<ControlMessage>(&bytes)?;
        decodes_again::<JobResult>(&bytes)?;
    }

    #[test]
    fn control_messages_round_trip(c in control()) {
        round_trips(&c)?;
    }

    #[test]
    fn results_round_trip(r in job_result()) {
        round_trips(&r)?;
    }
}

proptest! {
    // Heavier: larger generated values, or a dozen decodes per case.
    #![proptest_config(cfg(1000))]

    #[test]
    fn assignments_round_trip(b in batch(), one in assignment()) {
        round_trips(&b)?;
        round_trips(&one)?;
    }

    #[test]
    fn assignment_mutations_are_refused(
        b in batch(),
        cut in any::<usize>(),
        pick in any::<usize>(),
        depth in 130usize..400,
        name in "[a-z_]{1,12}",
        extra in json_value(),
    ) {
        let bytes = encode(&b)?;
        let decode = typed::<AssignmentBatch>;
        refuses_truncation(&bytes, cut, &decode)?;
        refuses_bad_fields(&to_value(&b)?, ASSIGNMENT_FIELDS, pick, depth, &decode)?;
        // args nested past the recursion limit.
        if !b.assignments.is_empty() {
            let raw = with_raw(&to_value(&b)?, "/assignments/0/args", &nested(depth, true));
            prop_assert!(raw.is_some_and(|r| decode(&r).is_err()));
        }
        ignores_unknown_field(&b, &name, extra)?;
    }

    #[test]
    fn control_mutations_are_refused(
        c in control(),
        cut in any::<usize>(),
        pick in any::<usize>(),
        depth in 130usize..400,
        name in "[a-z_]{1,12}",
        extra in json_value(),
        op in "[A-Za-z_]{0,10}",
    ) {
        let bytes = encode(&c)?;
        let decode = typed::<ControlMessage>;
        refuses_truncation(&bytes, cut, &decode)?;
        let doc = to_value(&c)?;
        refuses_bad_fields(&doc, CONTROL_FIELDS, pick, depth, &decode)?;
        // An unknown op, or none, is refused.
        if op != "register" && op != "cancel" {
            let mut bad = doc.clone();
            set_pointer(&mut bad, "/op", json!(op));
            prop_assert!(decode(&encode(&bad)?).is_err(), "op {op:?} accepted");
        }
        let mut bad = doc.clone();
        if let Value::Object(map) = &mut bad {
            map.remove("op");
        }
        prop_assert!(decode(&encode(&bad)?).is_err());
        ignores_unknown_field(&c, &name, extra)?;
    }

    #[test]
    fn result_mutations_are_refused(
        r in job_result(),
        cut in any::<usize>(),
        pick in any::<usize>(),
        depth in 130usize..400,
        name in "[a-z_]{1,12}",
        extra in json_value(),
    ) {
        let bytes = encode(&r)?;
        let decode = typed::<JobResult>;
        refuses_truncation(&bytes, cut, &decode)?;
        refuses_bad_fields(&to_value(&r)?, RESULT_FIELDS, pick, depth, &decode)?;
        let raw = with_raw(&to_value(&r)?, "/result", &nested(depth, true));
        prop_assert!(raw.is_some_and(|r| decode(&r).is_err()));
        ignores_unknown_field(&r, &name, extra)?;
    }

    #[test]
    fn agent_and_producer_byte_flips_never_panic(
        b in batch(),
        c in control(),
        r in job_result(),
        flips in vec((any::<usize>(), any::<u8>()), 1..4),
    ) {
        decodes_again::<AssignmentBatch>(&flip_bytes(encode(&b)?, &flips))?;
        decodes_again::<ControlMessage>(&flip_bytes(encode(&c)?, &flips))?;
        decodes_again::<JobResult>(&flip_bytes(encode(&r)?, &flips))?;
    }
}

// Notes on what these properties found the decoders to do by design,
// rather than assert against:
// - serde's derive reads a struct from a JSON array of its fields in
//   order. `JobSpec::decode` refuses a top-level array (`[null, "sleep"]`
//   is `malformed`), but a nested struct such as `requires` may still be
//   written as an array of its fields.
// - `JobResult { result: Some(Value::Null), .. }` encodes with no
//   `result` member and so decodes as `result: None`.
