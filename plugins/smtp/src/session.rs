//! One SMTP conversation (RFC 5321): replies read whole, commands answered with the codes
//! expected, STARTTLS (RFC 3207) and AUTH PLAIN / LOGIN (RFC 4954).

use crate::transport::Connection;
use backups_sdk::{PluginError, Result};

pub struct Session {
    connection: Connection,
}

/// What the server announced in its EHLO reply.
pub struct Extensions(Vec<String>);

impl Extensions {
    /// Whether the server announced `keyword`, e.g. `STARTTLS`, or `AUTH` with `PLAIN`.
    fn offers(&self, keyword: &str, parameter: Option<&str>) -> bool {
        // Each line is `250-KEYWORD params` (the first one is the greeting).
        self.0.iter().skip(1).any(|line| {
            let mut words = line
                .get(4..)
                .unwrap_or("")
                .split_ascii_whitespace()
                .map(str::to_ascii_uppercase);
            words.next().as_deref() == Some(keyword)
                && parameter.is_none_or(|p| words.any(|w| w == p))
        })
    }
}

impl Session {
    /// A session on `connection`, once the server's greeting has been read.
    pub fn start(connection: Connection) -> Result<Session> {
        let mut session = Session { connection };
        session.expect(&[220], "greeting")?;
        Ok(session)
    }

    pub fn ehlo(&mut self, hostname: &str) -> Result<Extensions> {
        Ok(Extensions(self.command(
            &format!("EHLO {hostname}"),
            &[250],
            "EHLO",
        )?))
    }

    /// STARTTLS, then the handshake (certificate verified for `server_name`). The caller
    /// says EHLO again: what the server announced in plain text no longer counts.
    pub fn start_tls(mut self, extensions: &Extensions, server_name: &str) -> Result<Session> {
        if !extensions.offers("STARTTLS", None) {
            return Err(PluginError::permanent(
                "use_tls: the server does not offer STARTTLS; refusing to go on in plain text",
            ));
        }
        self.command("STARTTLS", &[220], "STARTTLS")?;
        Ok(Session {
            connection: self.connection.start_tls(server_name)?,
        })
    }

    /// AUTH PLAIN, or LOGIN when that is all the server offers.
    pub fn login(&mut self, extensions: &Extensions, user: &str, password: &str) -> Result<()> {
        if extensions.offers("AUTH", Some("LOGIN")) && !extensions.offers("AUTH", Some("PLAIN")) {
            self.command("AUTH LOGIN", &[334], "AUTH")?;
            self.command(&b64(user), &[334], "AUTH user")?;
            self.command(&b64(password), &[235], "AUTH")?;
        } else {
            let token = b64(&format!("\0{user}\0{password}"));
            self.command(&format!("AUTH PLAIN {token}"), &[235], "AUTH")?;
        }
        Ok(())
    }

    /// QUIT, and a clean end of the TLS session; the message is already accepted, so
    /// what happens here changes nothing.
    pub fn quit(mut self) {
        let _ = self.command("QUIT", &[221], "QUIT");
        self.connection.close();
    }

    /// Reads one (possibly multi-line) reply; returns its code and lines.
    fn reply(&mut self) -> Result<(u16, Vec<String>)> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = self.connection.read_line(&mut line).map_err(|e| {
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

    pub fn command(&mut self, line: &str, codes: &[u16], what: &str) -> Result<Vec<String>> {
        // Replies are read whole before the next command, so nothing is left unread here.
        self.connection
            .send(format!("{line}\r\n").as_bytes())
            .map_err(|e| PluginError::transient(format!("writing to the SMTP server: {e}")))?;
        self.expect(codes, what)
    }
}

fn b64(text: &str) -> String {
    backups_notify_http::base64_standard(text.as_bytes())
}
