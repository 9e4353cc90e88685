//! # smtp — a plain-text e-mail after each run
//!
//! ```json
//! { "type": "smtp", "host": "smtp.mycompany.com", "port": 587,
//!   "credentials": { "username": "backups", "password": "…" },
//!   "success_to": "archive@mycompany.com", "failure_to": "sysadmin@mycompany.com" }
//! ```
//!
//! | key | meaning |
//! |---|---|
//! | `host`, `port` | the SMTP server (port default 25) |
//! | `credentials.username`, `credentials.password` | SMTP AUTH (PLAIN, or LOGIN if that is all the server offers); also accepted flat as `username` / `password` |
//! | `success_to`, `failure_to` | who is told of a good / failed run (comma-separated for several); without one, that case sends nothing |
//! | `from` | the sender (default: the recipient, as the legacy tool did) |
//! | `use_tls`, `use_ssl` | STARTTLS / implicit TLS: **not available yet** — plugins cannot do TLS until the host offers it; a job asking for it is refused at configure time rather than sending credentials in clear |
//!
//! The message: subject `Backup of job J on H succeeded` / `FAILED …` / `Backups OVERDUE …`,
//! `X-Backup-Job` / `X-Backup-Hostname` headers, and the run's summary table as the body.
//! For TLS today, point it at a local relay (Postfix with a smarthost) on 127.0.0.1.
//! Grant derived from `host` and `port`.

use backups_notify_http::headline;
use backups_sdk::config::flag;
use backups_sdk::{About, Context, Grants, Notifier, Plugin, PluginError, Report, Result};
use serde::Deserialize;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;

#[derive(Deserialize)]
pub struct Config {
    host: String,
    #[serde(default = "smtp_port")]
    port: u16,
    #[serde(default)]
    credentials: Credentials,
    username: Option<String>,
    password: Option<String>,
    #[serde(default, deserialize_with = "flag")]
    use_tls: bool,
    #[serde(default, deserialize_with = "flag")]
    use_ssl: bool,
    success_to: Option<String>,
    failure_to: Option<String>,
    from: Option<String>,
}

fn smtp_port() -> u16 {
    25
}

#[derive(Deserialize, Default)]
struct Credentials {
    username: Option<String>,
    password: Option<String>,
}

pub struct Smtp {
    host: String,
    port: u16,
    login: Option<(String, String)>,
    success_to: Vec<String>,
    failure_to: Vec<String>,
    from: Option<String>,
    hostname: String,
}

fn addresses(list: &Option<String>) -> Vec<String> {
    list.as_deref()
        .unwrap_or("")
        .split([',', ';', ' '])
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect()
}

impl Plugin for Smtp {
    type Config = Config;

    fn about() -> About {
        About::new("smtp", "a plain-text e-mail after each run")
            .version(env!("CARGO_PKG_VERSION"))
            .keys(&[
                "host",
                "port",
                "credentials",
                "username",
                "password",
                "use_tls",
                "use_ssl",
                "success_to",
                "failure_to",
                "from",
            ])
            .secrets(&["credentials.password", "password"])
    }

    fn requested_grants(config: &Config) -> Result<Grants> {
        Ok(Grants {
            net: vec![format!("{}:{}", config.host, config.port)],
            ..Grants::default()
        })
    }

    fn configure(ctx: Context, config: Config) -> Result<Self> {
        if config.use_tls || config.use_ssl {
            return Err(PluginError::invalid_config(
                "use_tls/use_ssl: TLS is not available to plugins yet; refusing to send credentials \
                 in clear — relay through a local MTA (127.0.0.1) that does TLS",
            ));
        }
        for a in addresses(&config.success_to)
            .iter()
            .chain(&addresses(&config.failure_to))
        {
            if !a.contains('@') || a.contains(['<', '>', '\r', '\n']) {
                return Err(PluginError::invalid_config(format!(
                    "{a:?} is not an e-mail address"
                )));
            }
        }
        let user = config
            .credentials
            .username
            .clone()
            .or(config.username.clone());
        let pass = config
            .credentials
            .password
            .clone()
            .or(config.password.clone());
        let login = match (user, pass) {
            (Some(u), Some(p)) => Some((u, p)),
            (None, None) => None,
            _ => {
                return Err(PluginError::invalid_config(
                    "credentials: give both username and password",
                ));
            }
        };
        Ok(Smtp {
            host: config.host.clone(),
            port: config.port,
            login,
            success_to: addresses(&config.success_to),
            failure_to: addresses(&config.failure_to),
            from: config.from.clone(),
            hostname: ctx.hostname,
        })
    }
}

/// One SMTP conversation, over one stream (wasip2 sockets cannot be cloned).
struct Session {
    reader: BufReader<TcpStream>,
}

impl Session {
    fn connect(host: &str, port: u16) -> Result<Session> {
        let stream = TcpStream::connect((host, port))
            .map_err(|e| PluginError::transient(format!("connecting to {host}:{port}: {e}")))?;
        let mut session = Session {
            reader: BufReader::new(stream),
        };
        session.expect(&[220], "greeting")?;
        Ok(session)
    }

    /// Reads one (possibly multi-line) reply; returns its code and lines.
    fn reply(&mut self) -> Result<(u16, Vec<String>)> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).map_err(|e| {
                PluginError::transient(format!("reading from the SMTP server: {e}"))
            })?;
            if n == 0 {
                return Err(PluginError::transient(
                    "the SMTP server closed the connection",
                ));
            }
            let line = line.trim_end().to_string();
            let code: u16 = line
                .get(..3)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| PluginError::permanent(format!("not an SMTP reply: {line:?}")))?;
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                return Ok((code, lines));
            }
        }
    }

    fn expect(&mut self, codes: &[u16], what: &str) -> Result<Vec<String>> {
        let (code, lines) = self.reply()?;
        if codes.contains(&code) {
            return Ok(lines);
        }
        let text = lines.join(" / ");
        Err(match code {
            535 | 530 | 534 => PluginError::auth(format!("{what}: {text}")),
            400..=499 => PluginError::transient(format!("{what}: {text}")),
            _ => PluginError::permanent(format!("{what}: {text}")),
        })
    }

    fn command(&mut self, line: &str, codes: &[u16], what: &str) -> Result<Vec<String>> {
        // Replies are read whole before the next command, so the buffer is empty here.
        self.reader
            .get_mut()
            .write_all(format!("{line}\r\n").as_bytes())
            .map_err(|e| PluginError::transient(format!("writing to the SMTP server: {e}")))?;
        self.expect(codes, what)
    }
}

fn b64(text: &str) -> String {
    backups_notify_http::base64_standard(text.as_bytes())
}

/// RFC 5322 date of a Unix time, UTC.
fn rfc5322(unix: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = (unix / 86_400) as i64;
    let (y, m, d) = backups_notify_http::civil_from_days(days);
    let s = unix % 86_400;
    format!(
        "{}, {d:02} {} {y} {:02}:{:02}:{:02} +0000",
        DAYS[(days.rem_euclid(7)) as usize],
        MONTHS[(m - 1) as usize],
        s / 3600,
        (s % 3600) / 60,
        s % 60
    )
}

impl Smtp {
    fn message(&self, from: &str, to: &[String], report: &Report) -> String {
        let subject = headline(report).replace(['\r', '\n'], " ");
        let mut body = String::new();
        body += &format!("{}\r\n\r\n", headline(report));
        for line in report.summary.lines() {
            // Dot-stuffing: a line starting with "." would end the DATA section.
            if line.starts_with('.') {
                body.push('.');
            }
            body += line;
            body += "\r\n";
        }
        format!(
            "From: {from}\r\nTo: {}\r\nSubject: {subject}\r\nDate: {}\r\nMessage-ID: <{}.{}@{}>\r\n\
             MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\
             X-Backup-Job: {}\r\nX-Backup-Hostname: {}\r\n\r\n{body}",
            to.join(", "),
            rfc5322(report.finished_at),
            report.run_id,
            backups_notify_http::kind_name(report),
            self.hostname,
            report.job,
            report.hostname,
        )
    }
}

impl Notifier for Smtp {
    fn notify(&mut self, report: &Report) -> Result<()> {
        // Starts and good runs go to success_to; failures and stale alerts to failure_to.
        let to = if backups_notify_http::good_news(report) {
            &self.success_to
        } else {
            &self.failure_to
        };
        if to.is_empty() {
            // Like the legacy tool: no success_to (failure_to), no mail for that case.
            return Ok(());
        }
        let from = self.from.clone().unwrap_or_else(|| to[0].clone());
        let mut s = Session::connect(&self.host, self.port)?;
        let features = s.command(&format!("EHLO {}", self.hostname), &[250], "EHLO")?;
        if let Some((user, pass)) = &self.login {
            let offers = |m: &str| {
                features.iter().any(|l| {
                    l.to_ascii_uppercase().contains("AUTH") && l.to_ascii_uppercase().contains(m)
                })
            };
            if offers("PLAIN") || !offers("LOGIN") {
                s.command(
                    &format!("AUTH PLAIN {}", b64(&format!("\0{user}\0{pass}"))),
                    &[235],
                    "AUTH",
                )?;
            } else {
                s.command("AUTH LOGIN", &[334], "AUTH")?;
                s.command(&b64(user), &[334], "AUTH user")?;
                s.command(&b64(pass), &[235], "AUTH")?;
            }
        }
        s.command(&format!("MAIL FROM:<{from}>"), &[250], "MAIL FROM")?;
        for rcpt in to {
            s.command(
                &format!("RCPT TO:<{rcpt}>"),
                &[250, 251],
                &format!("RCPT TO {rcpt}"),
            )?;
        }
        s.command("DATA", &[354], "DATA")?;
        let message = self.message(&from, to, report);
        s.command(&format!("{message}."), &[250], "sending the message")?;
        let _ = s.command("QUIT", &[221], "QUIT");
        Ok(())
    }
}

backups_sdk::export_notifier!(Smtp);
