//! The byte stream an SMTP session runs over: a TCP connection opened with `wasi:sockets`
//! (the host checks every connect against the entry's `net` grant), optionally upgraded to
//! TLS with `wasi:tls`. The host does the TLS: its trust store verifies the server's
//! certificate against the name we connected to, so a plugin cannot weaken verification.

use backups_sdk::{PluginError, Result};
use std::io::{BufRead, BufReader, Write};
use wasip2::io::streams::{InputStream, OutputStream};
use wasip2::sockets::instance_network::instance_network;
use wasip2::sockets::ip_name_lookup::resolve_addresses;
use wasip2::sockets::network::{
    ErrorCode, IpAddress, IpAddressFamily, IpSocketAddress, Ipv4SocketAddress, Ipv6SocketAddress,
    Network,
};
use wasip2::sockets::tcp::TcpSocket;
use wasip2::sockets::tcp_create_socket::create_tcp_socket;

mod bindings {
    // Only `wasi:tls/types`; its `wasi:io` types are the `wasip2` crate's, so the TCP
    // streams can be handed to the handshake as they are.
    wit_bindgen::generate!({
        path: ["../../wit/deps/io", "../../wit/deps/tls"],
        world: "wasi:tls/imports@0.2.0-draft",
        features: ["tls"],
        with: {
            "wasi:io/error@0.2.12": wasip2::io::error,
            "wasi:io/poll@0.2.12": wasip2::io::poll,
            "wasi:io/streams@0.2.12": wasip2::io::streams,
        },
    });
}

use bindings::wasi::tls::types::{ClientConnection, ClientHandshake};

/// One connection. Fields drop in order: the streams before the TLS connection they
/// belong to, and everything before the socket.
pub struct Connection {
    reader: BufReader<InputStream>,
    writer: OutputStream,
    tls: Option<ClientConnection>,
    _socket: TcpSocket,
}

impl Connection {
    /// Connects to the first address of `host` that accepts. A refusal by the host's
    /// grant check is `denied`; anything else on the way is `transient`.
    pub fn open(host: &str, port: u16) -> Result<Connection> {
        let network = instance_network();
        let mut last = None;
        for ip in resolve(&network, host)? {
            match connect(&network, ip, port) {
                Ok((socket, input, output)) => {
                    return Ok(Connection {
                        reader: BufReader::new(input),
                        writer: output,
                        tls: None,
                        _socket: socket,
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        let e = last.unwrap_or(ErrorCode::NameUnresolvable);
        Err(socket_error(e, &format!("connecting to {host}:{port}")))
    }

    /// Runs the TLS handshake over this connection, verifying the server's certificate
    /// for `server_name`, and returns the encrypted connection. Nothing read so far may be
    /// left unread: bytes the server sent before the handshake would otherwise be taken
    /// for part of the encrypted session (RFC 3207 §4.2, the STARTTLS injection attack).
    pub fn start_tls(self, server_name: &str) -> Result<Connection> {
        if !self.reader.buffer().is_empty() {
            return Err(PluginError::permanent(
                "the SMTP server sent data before the TLS handshake; refusing to continue",
            ));
        }
        let Connection {
            reader,
            writer,
            _socket,
            ..
        } = self;
        let handshake = ClientHandshake::new(server_name, reader.into_inner(), writer);
        let pending = ClientHandshake::finish(handshake);
        pending.subscribe().block();
        let (tls, input, output) = match pending.get() {
            Some(Ok(Ok(streams))) => streams,
            Some(Ok(Err(e))) => return Err(handshake_error(server_name, &e.to_debug_string())),
            // Ready after the block above, and taken only here: neither happens.
            None | Some(Err(())) => {
                return Err(PluginError::permanent("the TLS handshake gave no result"));
            }
        };
        Ok(Connection {
            reader: BufReader::new(input),
            writer: output,
            tls: Some(tls),
            _socket,
        })
    }

    /// One line, with its line ending; `Ok(0)` at the end of the stream.
    pub fn read_line(&mut self, line: &mut String) -> std::io::Result<usize> {
        self.reader.read_line(line)
    }

    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        // io::Write's, not the streams' own methods of the same names.
        Write::write_all(&mut self.writer, bytes)?;
        Write::flush(&mut self.writer)
    }

    /// Ends the TLS session cleanly (close_notify) so the server can tell a finished
    /// session from a cut one.
    pub fn close(self) {
        if let Some(tls) = &self.tls {
            tls.close_output();
        }
    }
}

/// The addresses of `host` (an IP literal resolves to itself).
fn resolve(network: &Network, host: &str) -> Result<Vec<IpAddress>> {
    let lookup = |e| socket_error(e, &format!("looking up {host}"));
    let stream = resolve_addresses(network, host).map_err(lookup)?;
    let mut addresses = Vec::new();
    loop {
        match stream.resolve_next_address() {
            Ok(Some(ip)) => addresses.push(ip),
            Ok(None) => return Ok(addresses),
            Err(ErrorCode::WouldBlock) => stream.subscribe().block(),
            Err(e) => return Err(lookup(e)),
        }
    }
}

fn connect(
    network: &Network,
    ip: IpAddress,
    port: u16,
) -> std::result::Result<(TcpSocket, InputStream, OutputStream), ErrorCode> {
    let (family, address) = match ip {
        IpAddress::Ipv4(address) => (
            IpAddressFamily::Ipv4,
            IpSocketAddress::Ipv4(Ipv4SocketAddress { port, address }),
        ),
        IpAddress::Ipv6(address) => (
            IpAddressFamily::Ipv6,
            IpSocketAddress::Ipv6(Ipv6SocketAddress {
                port,
                address,
                flow_info: 0,
                scope_id: 0,
            }),
        ),
    };
    let socket = create_tcp_socket(family)?;
    socket.start_connect(network, address)?;
    loop {
        match socket.finish_connect() {
            Ok((input, output)) => return Ok((socket, input, output)),
            Err(ErrorCode::WouldBlock) => socket.subscribe().block(),
            Err(e) => return Err(e),
        }
    }
}

fn socket_error(e: ErrorCode, what: &str) -> PluginError {
    // The code's name ("connection-refused"): its message() is a paragraph of WASI docs.
    let message = format!("{what}: {}", e.name());
    match e {
        ErrorCode::AccessDenied => PluginError::denied(message),
        _ => PluginError::transient(message),
    }
}

/// A certificate that does not verify is the server failing to prove who it is: not
/// worth another try, and never a reason to go on in plain text. A connection lost
/// during the handshake is worth another try.
fn handshake_error(server_name: &str, reason: &str) -> PluginError {
    let message = format!("TLS handshake with {server_name}: {reason}");
    let lower = reason.to_ascii_lowercase();
    let hint = if lower.contains("unknownissuer") {
        " — its issuer is not among the trusted roots of the machine running backups (for an \
         internal CA, point SSL_CERT_FILE or SSL_CERT_DIR at it)"
    } else if lower.contains("not valid for name") {
        " — `host` must be a name the server's certificate is issued for"
    } else {
        ""
    };
    if lower.contains("certificate") {
        PluginError::permanent(format!("{message}{hint}"))
    } else if ["eof", "reset", "broken pipe", "timed out", "closed"]
        .iter()
        .any(|m| lower.contains(m))
    {
        PluginError::transient(message)
    } else {
        PluginError::permanent(message)
    }
}
