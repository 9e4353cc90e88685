//! The host services a plugin may import: `log` and `process` (the filesystem ones are in
//! `files.rs`). Each checks
//! the instance's grants itself and logs every denial with the plugin, the capability and
//! what was asked for.

use super::bindings::source::backups::plugin::types;
use super::bindings::{ErrorKind, PluginError, log, process};
use super::sink::CHUNK_BYTES;
use super::state::PluginState;
use crate::interrupt;
use crate::redact::Redactor;
use bytes::Bytes;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use wasmtime::component::Resource;
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, Pollable as _, StreamError};

/// How much of a command's stderr is kept for the error message and report.
const STDERR_TAIL: usize = 8 << 10;

pub(super) fn denied(message: String) -> PluginError {
    PluginError {
        kind: ErrorKind::Denied,
        message,
    }
}

fn failed(kind: ErrorKind, message: String) -> PluginError {
    PluginError { kind, message }
}

impl types::Host for PluginState {}

impl log::Host for PluginState {
    async fn log(&mut self, level: log::Level, message: String) {
        if self.log_truncated {
            return;
        }
        let cost = message.len() as u64 + 1;
        if cost > self.log_left {
            self.log_truncated = true;
            tracing::warn!(
                plugin = %self.label(),
                "log limit of {} bytes reached: further lines from this plugin are dropped",
                self.policy.log_budget
            );
            return;
        }
        self.log_left -= cost;
        let message = crate::text::for_terminal(&self.policy.redactor.redact(&message), 4096);
        let plugin = self.label();
        match level {
            log::Level::Trace => tracing::trace!(plugin, "{message}"),
            log::Level::Debug => tracing::debug!(plugin, "{message}"),
            log::Level::Info => tracing::info!(plugin, "{message}"),
            log::Level::Warn => tracing::warn!(plugin, "{message}"),
            log::Level::Error => tracing::error!(plugin, "{message}"),
        }
    }
}

impl PluginState {
    fn granted_program(&self, command: &process::Command) -> Result<PathBuf, PluginError> {
        match self.policy.grants.program(&command.program) {
            Some(path) => Ok(path.to_path_buf()),
            None => {
                tracing::warn!(
                    plugin = %self.label(),
                    capability = "run",
                    wanted = %command.program,
                    "denied: {} is not in the run grant",
                    command.program
                );
                Err(denied(format!(
                    "running {} is not granted",
                    command.program
                )))
            }
        }
    }

    /// Starts `program` without a shell or inherited environment, in its own process
    /// group. Its stdin is a pipe when `pipe_stdin`, /dev/null otherwise.
    fn spawn(
        &self,
        program: &Path,
        command: &process::Command,
        pipe_stdin: bool,
    ) -> Result<Spawned, PluginError> {
        tracing::debug!(
            plugin = %self.label(),
            "run {} {}",
            program.display(),
            crate::text::for_terminal(&self.policy.redactor.redact(&command.args.join(" ")), 4096)
        );
        tokio::process::Command::new(program)
            .args(&command.args)
            .env_clear()
            .envs(command.env.iter().map(|(k, v)| (k, v)))
            .current_dir("/")
            .stdin(if pipe_stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so that everything it starts can be stopped with it.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| io_error(&e, &command.program))
            .and_then(|child| Spawned::track(child, &command.program))
    }

    /// Checks the grant and starts `command` with its `stdin` bytes fed in the background.
    fn start(&self, command: &process::Command) -> Result<Spawned, PluginError> {
        let program = self.granted_program(command)?;
        let mut child = self.spawn(&program, command, command.stdin.is_some())?;
        Self::feed_stdin(&mut child, command.stdin.clone());
        Ok(child)
    }

    /// Feeds `stdin` to the child in the background and closes it; a child that exits
    /// without reading it all is not an error here (its exit status says what happened).
    fn feed_stdin(child: &mut tokio::process::Child, stdin: Option<Vec<u8>>) {
        if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
            tokio::spawn(async move {
                let _ = pipe.write_all(&bytes).await;
                let _ = pipe.shutdown().await;
            });
        }
    }

    /// What a command's output is logged under, and how secrets are hidden from it.
    fn output_context(&self) -> (String, Redactor) {
        (self.label().to_string(), self.policy.redactor.clone())
    }
}

impl process::Host for PluginState {
    async fn private_file(
        &mut self,
        name: String,
        contents: String,
    ) -> Result<String, PluginError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        if self.private_files.len() as u64 >= self.policy.private_files_most {
            return Err(failed(
                ErrorKind::Denied,
                format!(
                    "private-file: this plugin already made {} private files, its limit \
                     (limits.private_files)",
                    self.private_files.len()
                ),
            ));
        }
        let bytes = self.private_file_bytes + contents.len() as u64;
        if bytes > self.policy.private_file_bytes_most {
            return Err(failed(
                ErrorKind::Denied,
                format!(
                    "private-file: {} more bytes would pass this plugin's limit of {} KiB \
                     (limits.private_file_kib)",
                    contents.len(),
                    self.policy.private_file_bytes_most >> 10
                ),
            ));
        }
        self.private_file_bytes = bytes;
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .take(64)
            .collect();
        let unique = format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        );
        let path = self.policy.tmpdir.join(format!(".private-{unique}-{safe}"));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| io_error(&e, &path.display().to_string()))?;
        self.private_files.push(path.clone());
        file.write_all(contents.as_bytes())
            .map_err(|e| io_error(&e, &path.display().to_string()))?;
        Ok(path.display().to_string())
    }

    async fn stream_stdout(&mut self, command: process::Command) -> Result<(), PluginError> {
        let Some(sink) = self.sink.clone() else {
            return Err(failed(
                ErrorKind::Permanent,
                "stream-stdout is only available to a source during dump".into(),
            ));
        };
        let child = self.start(&command)?;
        let (label, redactor) = self.output_context();
        let to = StdoutTo::Artifact(sink);
        match splice_stdout(child, &command.program, &label, &redactor, to).await? {
            Spliced::Complete(_) => Ok(()),
            Spliced::Stopped(_) => Err(failed(
                ErrorKind::Permanent,
                format!(
                    "{}: the artifact pipeline stopped before its output ended",
                    command.program
                ),
            )),
        }
    }

    async fn run(
        &mut self,
        command: process::Command,
        max_stdout: u32,
    ) -> Result<process::CommandOutput, PluginError> {
        let child = self.start(&command)?;
        let (label, redactor) = self.output_context();
        // The `stdin` bytes, if any, are fed in the background by `start`.
        let fed = std::future::ready(Ok(true));
        collect_output(child, &command.program, max_stdout, &label, &redactor, fed).await
    }

    async fn stdin_from(
        &mut self,
        command: process::Command,
        data: Resource<DynInputStream>,
        max_stdout: u32,
    ) -> Result<process::CommandOutput, PluginError> {
        let program = self.granted_program(&command)?;
        if command.stdin.is_some() {
            return Err(failed(
                ErrorKind::Permanent,
                format!(
                    "{}: stdin-from feeds the command from the stream; command.stdin must be none",
                    command.program
                ),
            ));
        }
        let mut child = self.spawn(&program, &command, true)?;
        let (label, redactor) = self.output_context();
        let pipe = child.stdin.take().expect("piped");
        let pgid = child.pgid;
        let input = self.table.get_mut(&data).map_err(|e| table_error(&e))?;
        let fed = feed_from_stream(input, pipe, pgid, &command.program);
        collect_output(child, &command.program, max_stdout, &label, &redactor, fed).await
    }

    async fn stdout_to(
        &mut self,
        command: process::Command,
        sink: Resource<DynOutputStream>,
    ) -> Result<u64, PluginError> {
        let child = self.start(&command)?;
        let (label, redactor) = self.output_context();
        let out = self.table.get_mut(&sink).map_err(|e| table_error(&e))?;
        let to = StdoutTo::Stream(out);
        match splice_stdout(child, &command.program, &label, &redactor, to).await? {
            Spliced::Complete(bytes) => Ok(bytes),
            Spliced::Stopped(why) => Err(failed(
                ErrorKind::Permanent,
                format!("{}: writing its output failed: {why}", command.program),
            )),
        }
    }
}

/// Where a command's stdout goes.
enum StdoutTo<'a> {
    /// A source's artifact (`stream-stdout`).
    Artifact(super::sink::ArtifactSink),
    /// A stream the plugin was handed (`stdout-to`).
    Stream(&'a mut DynOutputStream),
}

impl StdoutTo<'_> {
    /// Hands over one chunk; an error says why the receiver took no more.
    async fn deliver(&mut self, chunk: Bytes) -> Result<(), String> {
        match self {
            // A closed channel: the pipeline stopped (it failed and says why).
            StdoutTo::Artifact(sink) => sink
                .send(chunk)
                .await
                .map_err(|()| "the artifact pipeline stopped".into()),
            StdoutTo::Stream(out) => out
                .blocking_write_and_flush(chunk)
                .await
                .map_err(|e| e.to_string()),
        }
    }
}

/// How a command's stdout was delivered.
enum Spliced {
    /// Every byte, this many.
    Complete(u64),
    /// The receiver stopped taking bytes, for this reason.
    Stopped(String),
}

/// Hands a command's stdout, chunk by chunk, to `to`, logs its stderr, and waits for it.
/// Fails when the command does not exit 0 (the message ends with its stderr tail).
async fn splice_stdout(
    mut child: Spawned,
    program: &str,
    label: &str,
    redactor: &Redactor,
    mut to: StdoutTo<'_>,
) -> Result<Spliced, PluginError> {
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let pump = async {
        let mut stdout = stdout;
        let mut delivered = 0u64;
        loop {
            let mut buf = bytes::BytesMut::with_capacity(CHUNK_BYTES);
            let n = stdout.read_buf(&mut buf).await?;
            if n == 0 {
                return Ok::<_, std::io::Error>(Spliced::Complete(delivered));
            }
            if let Err(why) = to.deliver(buf.freeze()).await {
                // Stop reading: the command gets SIGPIPE or is stopped with its group.
                return Ok(Spliced::Stopped(why));
            }
            delivered += n as u64;
        }
    };
    let (pumped, stderr_tail) = tokio::join!(pump, stderr_lines(stderr, label, redactor));
    let status = child.wait().await.map_err(|e| io_error(&e, program))?;
    let spliced = pumped.map_err(|e| io_error(&e, program))?;
    exit_result(program, status, &stderr_tail)?;
    Ok(spliced)
}

/// Keeps at most `max_stdout` bytes of a command's stdout (more stops it and is an error)
/// while `fed` gives it its input, logs its stderr, and returns how it ended. `fed` says
/// whether the command read all of its input; one that exits 0 without having done so
/// is an error.
async fn collect_output(
    mut child: Spawned,
    program: &str,
    max_stdout: u32,
    label: &str,
    redactor: &Redactor,
    fed: impl Future<Output = Result<bool, PluginError>>,
) -> Result<process::CommandOutput, PluginError> {
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let pgid = child.pgid;
    let limit = max_stdout as u64;
    let collect = async {
        let mut out = Vec::new();
        stdout.take(limit + 1).read_to_end(&mut out).await?;
        if out.len() as u64 > limit {
            // Stop it now: a command blocked on a full stdout would never finish reading
            // its input.
            kill_group(pgid);
        }
        Ok::<_, std::io::Error>(out)
    };
    let (fed, out, stderr_tail) = tokio::join!(fed, collect, stderr_lines(stderr, label, redactor));
    let out = out.map_err(|e| io_error(&e, program))?;
    if out.len() as u64 > limit {
        return Err(failed(
            ErrorKind::Permanent,
            format!("{program}: printed more than {max_stdout} bytes"),
        ));
    }
    let read_all_input = fed?;
    let status = child.wait().await.map_err(|e| io_error(&e, program))?;
    if status.success() && !read_all_input {
        return Err(failed(
            ErrorKind::Permanent,
            format!("{program} exited 0 without reading all of its input"),
        ));
    }
    use std::os::unix::process::ExitStatusExt;
    let exit_code = match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => -1,
    };
    Ok(process::CommandOutput {
        exit_code,
        stdout: out,
        stderr: stderr_tail,
    })
}

/// Copies `input` into a command's stdin, then closes it. `Ok(false)` when the command
/// closed its stdin before the stream ended. When reading the stream fails, the command's
/// group is killed before its stdin is closed: it must never see a clean end of a
/// truncated input (an upload client would store it as complete).
async fn feed_from_stream(
    input: &mut DynInputStream,
    mut pipe: tokio::process::ChildStdin,
    pgid: Option<i32>,
    program: &str,
) -> Result<bool, PluginError> {
    loop {
        input.ready().await;
        let chunk = match input.read(CHUNK_BYTES) {
            Ok(chunk) => chunk,
            Err(StreamError::Closed) => break,
            Err(e) => {
                kill_group(pgid);
                return Err(failed(
                    ErrorKind::Permanent,
                    format!("{program}: reading its input failed: {e}"),
                ));
            }
        };
        match pipe.write_all(&chunk).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(false),
            Err(e) => {
                kill_group(pgid);
                return Err(io_error(&e, program));
            }
        }
    }
    // Closing stdin is the end of the input; a command already gone says so in its status.
    let _ = pipe.shutdown().await;
    Ok(true)
}

pub(super) fn table_error(err: &wasmtime::component::ResourceTableError) -> PluginError {
    failed(ErrorKind::Permanent, format!("stream handle: {err}"))
}

/// Logs a child's stderr line by line (redacted) and returns its tail.
async fn stderr_lines(stderr: impl AsyncRead + Unpin, label: &str, redactor: &Redactor) -> String {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    let mut tail = String::new();
    while let Ok(Some(line)) = lines.next_line().await {
        let line = crate::text::for_terminal(&redactor.redact(&line), 4096);
        tracing::info!(plugin = label, "stderr: {line}");
        tail.push_str(&line);
        tail.push('\n');
        if tail.len() > 2 * STDERR_TAIL {
            tail.drain(..tail.len() - STDERR_TAIL);
        }
    }
    if tail.len() > STDERR_TAIL {
        let cut = tail.len() - STDERR_TAIL;
        let cut = (cut..tail.len())
            .find(|i| tail.is_char_boundary(*i))
            .unwrap_or(cut);
        tail.drain(..cut);
    }
    tail
}

/// A command that did not exit 0 is a failed dump, whatever it printed.
fn exit_result(
    program: &str,
    status: std::process::ExitStatus,
    stderr: &str,
) -> Result<(), PluginError> {
    use std::os::unix::process::ExitStatusExt;
    if status.success() {
        return Ok(());
    }
    let how = match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(_)) if interrupt::requested() => format!("was stopped: {}", interrupt::REASON),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => "ended abnormally".into(),
    };
    let stderr = stderr.trim();
    let detail = if stderr.is_empty() {
        String::new()
    } else {
        format!(": {stderr}")
    };
    Err(failed(
        ErrorKind::Permanent,
        format!("{program} {how}{detail}"),
    ))
}

pub(super) fn io_error(err: &std::io::Error, what: &str) -> PluginError {
    use std::io::ErrorKind as K;
    let kind = match err.kind() {
        K::NotFound => ErrorKind::NotFound,
        K::PermissionDenied => ErrorKind::Denied,
        K::TimedOut | K::Interrupted => ErrorKind::Transient,
        _ => ErrorKind::Permanent,
    };
    failed(kind, format!("{what}: {err}"))
}

/// A running command and its process group. Dropping it — when the call finishes, fails or
/// times out (the call's future is dropped) — kills the whole group, so a `sh -c` that
/// started other processes leaves none behind.
struct Spawned {
    child: tokio::process::Child,
    pgid: Option<i32>,
}

impl std::ops::Deref for Spawned {
    type Target = tokio::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.child
    }
}

impl std::ops::DerefMut for Spawned {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.child
    }
}

impl Spawned {
    /// Registers the command's group so that an interrupted run can stop it; refuses (and
    /// kills) it when the run is being interrupted already.
    fn track(child: tokio::process::Child, program: &str) -> Result<Spawned, PluginError> {
        let pgid = child.id().map(|id| id as i32);
        let spawned = Spawned { child, pgid };
        if let Some(pgid) = pgid
            && !interrupt::track(pgid)
        {
            return Err(failed(
                ErrorKind::Permanent,
                format!("{program} not started: {}", interrupt::REASON),
            ));
        }
        Ok(spawned)
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid {
            interrupt::untrack(pgid);
        }
        kill_group(self.pgid);
    }
}

/// Kills a command's whole process group (a group that is gone already is fine).
fn kill_group(pgid: Option<i32>) {
    if let Some(pgid) = pgid {
        interrupt::kill_group(pgid);
    }
}
