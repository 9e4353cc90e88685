//! # smtp — a plain-text e-mail after each run
//!
//! ```json
//! { "type": "smtp", "host": "smtp.mycompany.com", "port": 587, "use_tls": 1,
//!   "credentials": { "username": "backups", "password": "…" },
//!   "success_to": "archive@mycompany.com", "failure_to": "sysadmin@mycompany.com" }
//! ```
//!
//! | key | meaning |
//! |---|---|
//! | `host`, `port` | the SMTP server (port default 25, or 465 with `use_ssl`) |
//! | `use_tls` | STARTTLS (RFC 3207): plain EHLO, `STARTTLS`, the TLS handshake, EHLO again; a server that does not offer STARTTLS fails the notification |
//! | `use_ssl` | implicit TLS (RFC 8314, "SMTPS", port 465): the handshake right after connecting; wins over `use_tls` |
//! | `credentials.username`, `credentials.password` | SMTP AUTH (PLAIN, or LOGIN if that is all the server offers); also accepted flat as `username` / `password` |
//! | `allow_plain_auth` | say that sending the credentials without TLS is intended (a relay on 127.0.0.1, say): silences the warning below |
//! | `success_to`, `failure_to` | who is told of a good / failed run (comma-separated for several); without one, that case sends nothing |
//! | `from` | the sender (default: the recipient, as the legacy tool did) |
//!
//! The message: subject `Backup of job J on H succeeded` / `FAILED …` / `Backups OVERDUE …`,
//! `X-Backup-Job` / `X-Backup-Hostname` headers, and the run's summary table as the body.
//!
//! TLS is done by the host (`wasi:tls`): it verifies the server's certificate for `host`
//! against the system's trusted roots. For a relay with a certificate from an internal CA,
//! set the standard `SSL_CERT_FILE` (a PEM bundle) or `SSL_CERT_DIR` for the `backups`
//! process; either replaces the system store, so the bundle should hold the public roots
//! too if other TLS peers need them. A certificate that does not verify (unknown issuer,
//! wrong name, expired) fails the notification as `permanent` — the plugin never falls back
//! to plain text, and sends nothing after a failed handshake.
//!
//! Credentials with neither `use_tls` nor `use_ssl` go in clear, as the legacy tool sent
//! them — legacy job files run unchanged — but every run warns about it until the entry
//! sets `use_tls`/`use_ssl`, or `allow_plain_auth` to say it is intended. Without
//! credentials, plain SMTP is as the legacy tool did it.
//!
//! Failures: no connection, 4xx replies and a connection lost mid-session are `transient`;
//! 530/534/535 are `auth`; a connection the grants refuse is `denied`; other replies and
//! TLS failures are `permanent`. A failed notification is logged and reported; it never
//! fails the backup.
//!
//! Grant derived from `host` and `port`: the TCP connection (and so the TLS session over
//! it) can reach only that server.

mod session;
mod transport;

use backups_notify_http::headline;
use backups_sdk::config::flag;
use backups_sdk::{About, Context, Grants, Notifier, Plugin, PluginError, Report, Result};
use serde::Deserialize;
use session::Session;
use transport::Connection;

#[derive(Deserialize)]
pub struct Config {
    host: String,
    port: Option<u16>,
    #[serde(default)]
    credentials: Credentials,
    username: Option<String>,
    password: Option<String>,
    #[serde(default, deserialize_with = "flag")]
    use_tls: bool,
    #[serde(default, deserialize_with = "flag")]
    use_ssl: bool,
    #[serde(default, deserialize_with = "flag")]
    allow_plain_auth: bool,
    success_to: Option<String>,
    failure_to: Option<String>,
    from: Option<String>,
}

impl Config {
    fn security(&self) -> Security {
        if self.use_ssl {
            Security::ImplicitTls
        } else if self.use_tls {
            Security::StartTls
        } else {
            Security::Plain
        }
    }

    /// The legacy tool's defaults (Python's smtplib): 25, or 465 for SMTP over TLS.
    fn port(&self) -> u16 {
        self.port.unwrap_or(match self.security() {
            Security::ImplicitTls => 465,
            _ => 25,
        })
    }
}

#[derive(Deserialize, Default)]
struct Credentials {
    username: Option<String>,
    password: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Security {
    Plain,
    StartTls,
    ImplicitTls,
}

pub struct Smtp {
    host: String,
    port: u16,
    security: Security,
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
                "allow_plain_auth",
                "success_to",
                "failure_to",
                "from",
            ])
            .secrets(&["credentials.password", "password"])
            // As the legacy tool's base class: no mail unless notify_on_success /
            // notify_on_failure ask for it.
            .notify_by_default(false, false)
    }

    fn requested_grants(config: &Config) -> Result<Grants> {
        Ok(Grants {
            net: vec![format!("{}:{}", config.host, config.port())],
            ..Grants::default()
        })
    }

    fn configure(ctx: Context, config: Config) -> Result<Self> {
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
        if login.is_some() && config.security() == Security::Plain && !config.allow_plain_auth {
            backups_sdk::warn!(
                "credentials: the password goes to {} in clear: set use_tls (STARTTLS) or \
                 use_ssl (implicit TLS), or allow_plain_auth if a relay it may reach in clear \
                 (e.g. on 127.0.0.1) is intended",
                config.host
            );
        }
        Ok(Smtp {
            host: config.host.clone(),
            port: config.port(),
            security: config.security(),
            login,
            success_to: addresses(&config.success_to),
            failure_to: addresses(&config.failure_to),
            from: config.from.clone(),
            hostname: ctx.hostname,
        })
    }
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
    /// Connected, greeted, encrypted as configured and logged in: ready for MAIL FROM.
    fn open_session(&self) -> Result<Session> {
        let mut connection = Connection::open(&self.host, self.port)?;
        if self.security == Security::ImplicitTls {
            connection = connection.start_tls(&self.host)?;
        }
        let mut session = Session::start(connection)?;
        let mut extensions = session.ehlo(&self.hostname)?;
        if self.security == Security::StartTls {
            session = session.start_tls(&extensions, &self.host)?;
            extensions = session.ehlo(&self.hostname)?;
        }
        if let Some((user, password)) = &self.login {
            // configure() refused credentials without TLS unless allow_plain_auth.
            session.login(&extensions, user, password)?;
        }
        Ok(session)
    }

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
        let mut s = self.open_session()?;
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
        s.quit();
        Ok(())
    }
}

backups_sdk::export_notifier!(Smtp);
