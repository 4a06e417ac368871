//! An invalidation bus inside the process, for tests of several layer instances.

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use jit_provision::invalidation::{BusEvent, InvalidationBus, SignedInvalidation};
use jit_provision::store::StoreError;

/// An invalidation bus inside the process: what one instance publishes, every subscriber
/// receives.
#[derive(Clone)]
pub struct LocalBus(tokio::sync::broadcast::Sender<SignedInvalidation>);

impl LocalBus {
    pub fn new() -> Self {
        Self(tokio::sync::broadcast::channel(1024).0)
    }
}

impl InvalidationBus for LocalBus {
    fn publish(&self, message: SignedInvalidation) -> BoxFuture<'_, Result<(), StoreError>> {
        let _ = self.0.send(message);
        Box::pin(async { Ok(()) })
    }
    fn subscribe(&self) -> BoxStream<'static, BusEvent> {
        use tokio::sync::broadcast::error::RecvError;
        futures_util::stream::unfold(self.0.subscribe(), |mut rx| async move {
            let event = match rx.recv().await {
                Ok(message) => BusEvent::Message(message),
                Err(RecvError::Lagged(_)) => BusEvent::Gap,
                Err(RecvError::Closed) => return None,
            };
            Some((event, rx))
        })
        .boxed()
    }
}
