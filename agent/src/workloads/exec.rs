//! `exec`: runs a command the agent's operator allowed, for the job.
//!
//! `{"command": "/usr/bin/python3", "args": ["train.py", "--epochs", "3"]}`
//!
//! - The command must be one of the absolute paths given with
//!   `--allow-exec` (off by default: no `exec` without it), matched
//!   exactly. There is no shell: `args` go to the program as they are.
//! - The environment is cleared, then gets only the variables the operator
//!   passes through (`--exec-env NAME,…`) and `CUDA_VISIBLE_DEVICES` set
//!   to the job's GPUs (empty: none visible). The job's GPU indices are
//!   the agent's own, so they go out as the GPUs' UUIDs where the agent
//!   knows them: the program sees the GPUs the balancer placed the job
//!   on whatever its own device order or `CUDA_VISIBLE_DEVICES`. Without
//!   UUIDs they are mapped through the agent's own `CUDA_VISIBLE_DEVICES`
//!   when it was started with one.
//! - The program runs in its own process group; when the job is
//!   cancelled or times out, the whole group is killed (SIGKILL), so
//!   nothing it started lives on. An agent exiting on its own kills every
//!   group first ([`process_groups`]); an agent killed outright takes the
//!   program with it (a parent-death signal).
//! - The result is the exit code and the last [`TAIL_BYTES`] of stdout and
//!   stderr; a non-zero exit fails the attempt with the stderr tail.

use std::path::PathBuf;
use std::process::Stdio;

use fleet_protocol::workload_args::exec_request::{self, ExecRequest};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::process_groups;

/// How much of each output stream the result keeps (the end of it).
pub const TAIL_BYTES: usize = 16 * 1024;

/// What the operator allows.
#[derive(Debug, Clone, Default)]
pub struct ExecPolicy {
    /// Absolute paths of the programs jobs may run.
    pub allowed: Vec<PathBuf>,
    /// Names of environment variables passed through to them.
    pub pass_env: Vec<String>,
    /// What each of the agent's GPU indices names for a child process:
    /// the GPUs' UUIDs, else the agent's own `CUDA_VISIBLE_DEVICES` list.
    pub agent_devices: Option<Vec<String>>,
}

impl ExecPolicy {
    /// Whether any program is allowed (and so `exec` is offered).
    pub fn enabled(&self) -> bool {
        !self.allowed.is_empty()
    }

    /// Checks the operator's list: absolute paths only.
    pub fn new(allowed: Vec<PathBuf>, pass_env: Vec<String>) -> Result<ExecPolicy, String> {
        if let Some(p) = allowed.iter().find(|p| !p.is_absolute()) {
            return Err(format!(
                "--allow-exec takes absolute paths, got {}",
                p.display()
            ));
        }
        Ok(ExecPolicy {
            allowed,
            pass_env,
            agent_devices: std::env::var("CUDA_VISIBLE_DEVICES")
                .ok()
                .map(|v| split_devices(&v)),
        })
    }
}

impl ExecPolicy {
    /// Names the agent's GPUs by UUID (`uuids` as `(index, uuid)`), when
    /// every one of them has one.
    pub fn with_gpu_uuids(mut self, mut uuids: Vec<(u32, String)>) -> ExecPolicy {
        uuids.sort();
        let dense = uuids
            .iter()
            .enumerate()
            .all(|(i, (index, _))| *index as usize == i);
        if dense && !uuids.is_empty() {
            self.agent_devices = Some(uuids.into_iter().map(|(_, uuid)| uuid).collect());
        }
        self
    }
}

fn split_devices(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(str::to_string)
        .collect()
}

/// `CUDA_VISIBLE_DEVICES` for a job on the agent's GPUs `gpus`: the same
/// indices, or the agent's own entries for them where it was started with
/// a list (indices or UUIDs).
pub fn visible_devices(gpus: &[u32], agent_devices: Option<&[String]>) -> Result<String, String> {
    let Some(agent_devices) = agent_devices else {
        return Ok(gpus
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(","));
    };
    gpus.iter()
        .map(|g| {
            agent_devices.get(*g as usize).cloned().ok_or_else(|| {
                format!(
                    "exec: GPU {g} is not one of the agent's CUDA_VISIBLE_DEVICES ({})",
                    agent_devices.join(",")
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(|d| d.join(","))
}

/// A validated request.
pub type Request = ExecRequest;

/// Checks the job's arguments (as the balancer did) and then against this
/// agent's policy, before anything runs.
pub fn parse(job_args: &Value, policy: &ExecPolicy) -> Result<Request, String> {
    if !policy.enabled() {
        return Err("exec: this agent allows no commands (--allow-exec)".into());
    }
    let request = exec_request::parse(job_args)?;
    if !policy.allowed.contains(&request.command) {
        return Err(format!(
            "exec: {} is not an allowed command",
            request.command.display()
        ));
    }
    Ok(request)
}

/// Kills the process group if the job's future is dropped before the
/// command ended (cancel, timeout). It is dropped before the child handle,
/// so the group leader is still unreaped then and its group id cannot
/// have been reused. While it holds the group, the group is listed in
/// [`process_groups::LIVE`], for an agent that exits on its own.
struct GroupGuard(Option<i32>);

impl GroupGuard {
    fn new(pgid: Option<i32>) -> GroupGuard {
        if let Some(pgid) = pgid {
            process_groups::LIVE.add(pgid);
        }
        GroupGuard(pgid)
    }

    /// The command ended and was reaped: its group id may be reused from
    /// now on, so it must never be signalled again.
    fn ended(&mut self) {
        if let Some(pgid) = self.0.take() {
            process_groups::LIVE.remove(pgid);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0.take() {
            process_groups::kill_group(pgid);
            process_groups::LIVE.remove(pgid);
        }
    }
}

/// Runs the request with `gpus` visible.
pub async fn run(request: Request, gpus: &[u32], policy: &ExecPolicy) -> Result<Value, String> {
    let visible = visible_devices(gpus, policy.agent_devices.as_deref())?;
    let mut command = tokio::process::Command::new(&request.command);
    command
        .args(&request.args)
        .env_clear()
        .envs(
            policy
                .pass_env
                .iter()
                .filter_map(|name| std::env::var_os(name).map(|v| (name.clone(), v))),
        )
        .env("CUDA_VISIBLE_DEVICES", visible)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    // Should the agent be killed outright, the kernel kills the command
    // too, instead of leaving it running on a GPU the balancer will give
    // to another job. (The signal comes when the thread that started the
    // command ends: a tokio worker, which lives as long as the agent.)
    let agent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the child between fork and exec, where
    // only async-signal-safe calls are allowed: prctl(2) and getppid(2),
    // and io::Error from a raw code (no allocation).
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The agent died before the request took hold: run nothing.
            if libc::getppid() != agent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("exec: cannot start {}: {e}", request.command.display()))?;
    let mut guard = GroupGuard::new(child.id().map(|pid| pid as i32));
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let (status, out, err) = tokio::join!(child.wait(), tail(stdout), tail(stderr));
    guard.ended();
    let status = status.map_err(|e| format!("exec: waiting for the command failed: {e}"))?;
    let code = status.code();
    if status.success() {
        Ok(json!({"exit_code": code, "stdout_tail": out, "stderr_tail": err}))
    } else {
        let how = match code {
            Some(c) => format!("exit code {c}"),
            None => "killed by a signal".to_string(),
        };
        Err(format!(
            "exec: {} ended with {how}: {}",
            request.command.display(),
            err.trim_end()
        ))
    }
}

/// Reads a stream to its end, keeping the last [`TAIL_BYTES`].
async fn tail(stream: Option<impl AsyncRead + Unpin>) -> String {
    let Some(mut stream) = stream else {
        return String::new();
    };
    let mut kept: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                kept.extend_from_slice(&chunk[..n]);
                if kept.len() > 2 * TAIL_BYTES {
                    kept.drain(..kept.len() - TAIL_BYTES);
                }
            }
        }
    }
    if kept.len() > TAIL_BYTES {
        kept.drain(..kept.len() - TAIL_BYTES);
    }
    String::from_utf8_lossy(&kept).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn policy(allowed: &[&str]) -> ExecPolicy {
        ExecPolicy::new(allowed.iter().map(PathBuf::from).collect(), vec![]).unwrap_or_default()
    }

    #[test]
    fn job_gpus_are_mapped_through_the_agents_own_visible_devices() {
        assert_eq!(visible_devices(&[1, 3], None), Ok("1,3".into()));
        assert_eq!(visible_devices(&[], None), Ok(String::new()));
        // The agent was started with CUDA_VISIBLE_DEVICES=4,5,GPU-ab12:
        // its GPU 0 is physical 4, its GPU 2 the one with that UUID.
        let agent = split_devices("4, 5,GPU-ab12");
        assert_eq!(
            visible_devices(&[0, 2], Some(&agent)),
            Ok("4,GPU-ab12".into())
        );
        assert!(visible_devices(&[3], Some(&agent)).is_err());
        // Set but empty: the agent sees no GPU, so no job GPU exists.
        assert!(visible_devices(&[0], Some(&split_devices(""))).is_err());
    }

    #[test]
    fn known_gpu_uuids_name_the_devices_whatever_the_order() {
        let uuids = vec![(1, "GPU-bbbb".to_string()), (0, "GPU-aaaa".to_string())];
        let p = ExecPolicy::default().with_gpu_uuids(uuids);
        assert_eq!(
            visible_devices(&[1], p.agent_devices.as_deref()),
            Ok("GPU-bbbb".into())
        );
        // A GPU without a UUID (a gap): indices stay as they were.
        let p = ExecPolicy::default().with_gpu_uuids(vec![(1, "GPU-bbbb".into())]);
        assert_eq!(p.agent_devices, None);
    }

    #[test]
    fn refuses_what_the_operator_did_not_allow() {
        let none = ExecPolicy::default();
        assert!(parse(&json!({"command": "/bin/echo"}), &none).is_err());
        let p = policy(&["/bin/echo"]);
        assert!(parse(&json!({"command": "/bin/sh"}), &p).is_err());
        assert!(parse(&json!({"command": "echo"}), &p).is_err());
        assert!(parse(&json!({}), &p).is_err());
        assert!(parse(&json!({"command": "/bin/echo", "args": "a b"}), &p).is_err());
        assert!(parse(&json!({"command": "/bin/echo", "args": [1]}), &p).is_err());
        assert!(parse(&json!({"command": "/bin/echo", "shell": true}), &p).is_err());
        assert!(ExecPolicy::new(vec![PathBuf::from("python3")], vec![]).is_err());
        assert_eq!(
            parse(
                &json!({"command": "/bin/echo", "args": ["a b", "$HOME"]}),
                &p
            ),
            Ok(Request {
                command: PathBuf::from("/bin/echo"),
                args: vec!["a b".into(), "$HOME".into()],
            })
        );
    }

    #[tokio::test]
    async fn runs_without_a_shell_with_a_cleared_environment_and_the_job_gpus() -> Result<(), String>
    {
        let p = policy(&["/usr/bin/env", "/bin/echo"]);
        let r = run(
            parse(
                &json!({"command": "/bin/echo", "args": ["$HOME", "a;b"]}),
                &p,
            )?,
            &[],
            &p,
        )
        .await?;
        assert_eq!(r["stdout_tail"], "$HOME a;b\n");
        let r = run(parse(&json!({"command": "/usr/bin/env"}), &p)?, &[1, 3], &p).await?;
        assert_eq!(r["stdout_tail"], "CUDA_VISIBLE_DEVICES=1,3\n");
        Ok(())
    }

    #[tokio::test]
    async fn a_failing_command_fails_the_attempt_with_its_stderr() -> Result<(), String> {
        let p = policy(&["/bin/sh"]);
        let req = parse(
            &json!({"command": "/bin/sh", "args": ["-c", "echo oops >&2; exit 3"]}),
            &p,
        )?;
        let e = run(req, &[], &p).await.err().unwrap_or_default();
        assert!(e.contains("exit code 3") && e.contains("oops"), "{e}");
        Ok(())
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_process_group() -> Result<(), String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let pidfile = dir.path().join("pid");
        let p = policy(&["/bin/sh"]);
        // The command starts a grandchild that would outlive a plain kill.
        let script = format!("sleep 60 & echo $! > {}; wait", pidfile.display());
        let req = parse(&json!({"command": "/bin/sh", "args": ["-c", script]}), &p)?;
        let outcome = tokio::time::timeout(Duration::from_millis(500), run(req, &[], &p)).await;
        assert!(outcome.is_err(), "the job timed out");
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .map_err(|e| e.to_string())?
            .trim()
            .parse()
            .map_err(|e| format!("{e}"))?;
        // Reaping is asynchronous; wait for the grandchild to be gone.
        for _ in 0..100 {
            // SAFETY: signal 0 only checks whether the process exists.
            if unsafe { libc::kill(pid, 0) } != 0 {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(format!("grandchild {pid} survived the timeout"))
    }
}
