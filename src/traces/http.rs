//! OTLP/HTTP through our own reqwest client: the exporter's `HttpClient` trait implemented on the rustls reqwest 0.12 the sidecar already builds.
//!
//! opentelemetry-otlp ships that trait only for reqwest 0.13 (a second HTTP stack, and TLS only
//! through aws-lc-rs); this adapter keeps one client stack, with rustls and ring, and so reaches
//! `https://` collectors too.

use bytes::Bytes;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};

/// The largest collector answer read (an OTLP answer is a few bytes; a proxy's error page is
/// more, but not megabytes).
const MAX_ANSWER: usize = 1 << 20;

#[derive(Debug, Clone)]
pub struct ReqwestClient(pub reqwest::Client);

#[async_trait::async_trait]
impl HttpClient for ReqwestClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let mut answer = self.0.execute(request).await?;
        let mut out = Response::builder().status(answer.status());
        for (k, v) in answer.headers() {
            out = out.header(k, v);
        }
        let mut body: Vec<u8> = Vec::new();
        while let Some(chunk) = answer.chunk().await? {
            let room = MAX_ANSWER.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() >= MAX_ANSWER {
                break;
            }
        }
        Ok(out.body(Bytes::from(body))?)
    }
}
