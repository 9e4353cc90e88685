//! Sending a plugin's HTTP request once its grant check passed. We send it ourselves,
//! not with wasmtime's default sender, for two reasons:
//!
//! - The connection goes to an address we resolved and checked (see [`super::net`]), never
//!   to a second DNS answer: a DNS server that answers "public" for the check and
//!   "127.0.0.1" for the connection (DNS rebinding) gets nowhere.
//! - HTTPS trusts what `wasi:tls` trusts ([`super::tls`]): the system's roots, so an
//!   operator's internal CA (`SSL_CERT_FILE`) works for S3-compatible servers too.
//!
//! Timeouts are the plugin's request options, as wasmtime's sender applies them.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, RequestOptions};

pub type ResponseBody = UnsyncBoxBody<Bytes, Error>;
pub type Connection = Box<dyn Future<Output = Result<(), Error>> + Send>;

/// What wasmtime's sender waits when the plugin sets no timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// Sends `request` over a new connection to `addr`; `host` is the name TLS verifies.
/// Returns the response and the connection's remaining work (the body's I/O).
pub async fn send<B>(
    mut request: Request<B>,
    options: Option<RequestOptions>,
    addr: SocketAddr,
    host: &str,
    tls: bool,
) -> Result<(Response<ResponseBody>, Connection), Error>
where
    B: http_body::Body<Data = Bytes, Error = Error> + Send + 'static,
{
    let connect_timeout = options
        .and_then(|o| o.connect_timeout)
        .unwrap_or(DEFAULT_TIMEOUT);
    let first_byte_timeout = options
        .and_then(|o| o.first_byte_timeout)
        .unwrap_or(DEFAULT_TIMEOUT);
    let between_bytes_timeout = options
        .and_then(|o| o.between_bytes_timeout)
        .unwrap_or(DEFAULT_TIMEOUT)
        .max(Duration::from_nanos(1));

    let tcp = tokio::time::timeout(connect_timeout, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| Error::ConnectionTimeout)?
        .map_err(Error::Connect)?;
    let (mut sender, connection) = if tls {
        let name = super::tls::server_name(host).map_err(Error::InvalidDnsNameError)?;
        let stream =
            tokio::time::timeout(connect_timeout, super::tls::connector().connect(name, tcp))
                .await
                .map_err(|_| Error::ConnectionTimeout)?
                .map_err(Error::Tls)?;
        handshake(stream, connect_timeout).await?
    } else {
        handshake(tcp, connect_timeout).await?
    };

    // The request line carries only the path: scheme and authority are for proxies.
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    *request.uri_mut() = http::Uri::builder()
        .path_and_query(path)
        .build()
        .map_err(|_| Error::HttpRequestUriInvalid)?;

    // The connection is driven on its own task while we wait for the answer, and for as
    // long as the body is read; its end (or error) is the connection future we return.
    let driver = tokio::spawn(connection);
    let response = tokio::time::timeout(first_byte_timeout, sender.send_request(request))
        .await
        .map_err(|_| Error::ConnectionReadTimeout)??;
    let response = response.map(|incoming| {
        TimedBody {
            incoming,
            idle: tokio::time::interval_at(
                tokio::time::Instant::now() + between_bytes_timeout,
                between_bytes_timeout,
            ),
        }
        .boxed_unsync()
    });
    let connection: Connection = Box::new(async move {
        match driver.await {
            Ok(result) => result.map_err(Error::from),
            // Aborted with the runtime: nothing left to report.
            Err(_) => Ok(()),
        }
    });
    Ok((response, connection))
}

type Handshake<B> = (
    hyper::client::conn::http1::SendRequest<B>,
    hyper::client::conn::http1::Connection<TokioIo<Box<dyn Stream>>, B>,
);

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Stream for T {}

async fn handshake<B>(stream: impl Stream, limit: Duration) -> Result<Handshake<B>, Error>
where
    B: http_body::Body<Data = Bytes, Error = Error> + Send + 'static,
{
    let stream: Box<dyn Stream> = Box::new(stream);
    tokio::time::timeout(
        limit,
        hyper::client::conn::http1::handshake(TokioIo::new(stream)),
    )
    .await
    .map_err(|_| Error::ConnectionTimeout)?
    .map_err(Error::from)
}

/// A response body that fails when no bytes arrive for `between_bytes_timeout`.
struct TimedBody {
    incoming: hyper::body::Incoming,
    idle: tokio::time::Interval,
}

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Error>>> {
        match Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                self.idle.reset();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Error::from(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                ready!(self.idle.poll_tick(cx));
                Poll::Ready(Some(Err(Error::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.incoming.size_hint()
    }
}
