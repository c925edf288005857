//! The connection's peer address as a request carries it, and a request's way through the
//! router with it. Both the connection layer ([`crate::listen`]) and the ping handler (which
//! hands the paths it does not answer itself to the router) use this, so it is neither's.

use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use tower::Service;

/// The peer's IP address as pings record it, formatted once per connection: formatting it
/// per request was about 3% of a keep-alive ping's instructions (callgrind).
#[derive(Clone)]
pub struct PeerAddr(pub Arc<str>);

/// A request through the router, with the peer address as `ConnectInfo<PeerAddr>`.
pub(crate) fn route(
    router: &mut Router,
    peer: &PeerAddr,
    mut request: Request,
) -> <Router as Service<Request>>::Future {
    request.extensions_mut().insert(ConnectInfo(peer.clone()));
    router.call(request)
}
