//! A tower layer that puts every request of a server through the gate, laid out like
//! tower's `load_shed`: the layer, the service, its response future.
//!
//! A request arriving while the gate is closed is answered at once with `UNAVAILABLE`
//! ("the service is paused"), as ScalarDB answers; one let through holds a [`Pass`]
//! until its response body has been sent, so that a waiting Pause counts it as in
//! flight until the client has the whole answer. The admin calls themselves bypass the
//! gate, or a paused server could never be unpaused.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::{Gate, Pass};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The path prefix of the admin calls, which always pass.
const ADMIN_PREFIX: &str = "/rpc.Admin/";

/// Gates every request of the services it wraps.
///
/// ```
/// use scalar_admin::gate::{Gate, GateLayer};
///
/// let gate = Gate::new();
/// let layer = GateLayer::new(gate.clone()).bypass("/grpc.health.v1.Health/");
/// // tonic::transport::Server::builder()
/// //     .layer(layer)
/// //     .add_service(gate.admin_server())
/// //     .add_service(my_service)
/// ```
#[derive(Debug, Clone)]
pub struct GateLayer {
    gate: Gate,
    bypass: Arc<Vec<String>>,
}

impl GateLayer {
    /// Gates every request through `gate`, except the admin calls (`/rpc.Admin/`).
    pub fn new(gate: Gate) -> Self {
        Self {
            gate,
            bypass: Arc::new(vec![ADMIN_PREFIX.to_owned()]),
        }
    }

    /// Lets requests whose path starts with `prefix` through without the gate, such as
    /// health checks (`/grpc.health.v1.Health/`). Only the admin calls by default.
    pub fn bypass(mut self, prefix: &str) -> Self {
        Arc::make_mut(&mut self.bypass).push(prefix.to_owned());
        self
    }
}

impl<S> Layer<S> for GateLayer {
    type Service = GateService<S>;

    fn layer(&self, inner: S) -> GateService<S> {
        GateService {
            inner,
            gate: self.gate.clone(),
            bypass: self.bypass.clone(),
        }
    }
}

/// The service [`GateLayer`] makes: the wrapped service behind the gate.
#[derive(Debug, Clone)]
pub struct GateService<S> {
    inner: S,
    gate: Gate,
    bypass: Arc<Vec<String>>,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for GateService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let path = request.uri().path();
        let pass = if self.bypass.iter().any(|p| path.starts_with(p.as_str())) {
            None
        } else {
            match self.gate.enter() {
                Ok(pass) => Some(pass),
                Err(paused) => {
                    let status: tonic::Status = paused.into();
                    return ResponseFuture {
                        state: State::Refused {
                            response: Some(status.into_http()),
                        },
                    };
                }
            }
        };
        ResponseFuture {
            state: State::Called {
                future: self.inner.call(request),
                pass,
            },
        }
    }
}

pin_project! {
    /// The response future of [`GateService`].
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProjection]
    enum State<F> {
        // Let through: the wrapped service's answer, holding the pass.
        Called {
            #[pin]
            future: F,
            pass: Option<Pass>,
        },
        // Refused: the gate is closed.
        Refused {
            response: Option<http::Response<tonic::body::Body>>,
        },
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<ResBody>, E>>,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Output = Result<http::Response<tonic::body::Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProjection::Called { future, pass } => {
                let response = ready!(future.poll(cx))?;
                let pass = pass.take();
                Poll::Ready(Ok(
                    response.map(|body| tonic::body::Body::new(PassBody { inner: body, pass }))
                ))
            }
            StateProjection::Refused { response } => {
                Poll::Ready(Ok(response.take().unwrap_or_default()))
            }
        }
    }
}

pin_project! {
    /// A response body that keeps its request counted as in flight until it has been
    /// sent whole (or dropped).
    struct PassBody<B> {
        #[pin]
        inner: B,
        pass: Option<Pass>,
    }
}

impl<B: Body> Body for PassBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if frame.is_none() {
            this.pass.take();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
