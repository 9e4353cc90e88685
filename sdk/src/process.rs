//! Commands the host runs for a plugin: only those the job grants, never through a shell,
//! with no inherited environment.

use crate::error::Result;
#[cfg(feature = "destination")]
use crate::streams::{ObjectReader, ObjectWriter};
use crate::world::backups::plugin::process as wit;

pub use wit::CommandOutput;

/// A command line. Build with [`Command::new`] and the chained setters.
#[derive(Debug, Clone)]
pub struct Command {
    program: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    stdin: Option<Vec<u8>>,
}

impl Command {
    /// A command running `program`: a name the entry's `run` grant lists (looked up on
    /// the host's PATH) or an absolute path.
    pub fn new(program: impl Into<String>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            stdin: None,
        }
    }
    /// Appends one argument, passed as is: there is no shell.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }
    /// Appends arguments, each passed as is.
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }
    /// Sets a variable of the command's environment, which starts empty.
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }
    /// Bytes for the command's standard input (then closed). For secrets that a remote
    /// command reads, e.g. `mysqldump --defaults-file=/dev/stdin` over ssh.
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }
    /// The program and arguments, for logs (never includes stdin).
    pub fn display(&self) -> String {
        std::iter::once(self.program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn to_wit(&self) -> wit::Command {
        wit::Command {
            program: self.program.clone(),
            args: self.args.clone(),
            env: self.env.clone(),
            stdin: self.stdin.clone(),
        }
    }
}

/// Sources only: splice the command's stdout into the artifact. `Ok` means it exited 0.
pub fn stream_stdout(command: &Command) -> Result<()> {
    wit::stream_stdout(&command.to_wit()).map_err(Into::into)
}

/// Run a control command to completion, keeping at most `max_stdout` bytes of its stdout.
pub fn run(command: &Command, max_stdout: u32) -> Result<CommandOutput> {
    wit::run(&command.to_wit(), max_stdout).map_err(Into::into)
}

/// Destinations: run a command (an upload client) with the object being stored as its
/// standard input; the bytes go from the host to the command without passing through the
/// plugin. Like [`run`], a non-zero exit is in the output, with at most `max_stdout` bytes
/// of stdout and the stderr tail. `command` must not set [`Command::stdin`].
#[cfg(feature = "destination")]
pub fn stdin_from(
    command: &Command,
    data: &mut ObjectReader,
    max_stdout: u32,
) -> Result<CommandOutput> {
    wit::stdin_from(&command.to_wit(), data.stream(), max_stdout).map_err(Into::into)
}

/// Destinations: run a command (a download client) and write its stdout into `sink`;
/// returns the bytes written. `Ok` means it exited 0.
#[cfg(feature = "destination")]
pub fn stdout_to(command: &Command, sink: &mut ObjectWriter) -> Result<u64> {
    let written = wit::stdout_to(&command.to_wit(), sink.stream())?;
    sink.count(written);
    Ok(written)
}

/// A 0600 file in the host's tmpdir holding `contents` (credentials); returns its path.
/// Removed by the host when the plugin instance ends.
pub fn private_file(name: &str, contents: &str) -> Result<String> {
    wit::private_file(name, contents).map_err(Into::into)
}
