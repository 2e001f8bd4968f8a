//! The blocking face of the client for synchronous callers (`wildreward eval`, the DPO loop): it owns
//! a single-threaded tokio runtime and drives the async client on it, so chunks still go out
//! concurrently while the caller just waits.

use crate::client::{ItemResults, ItemScore, ScoringClient};
use crate::error::ClientError;
use crate::options::ClientOptions;
use wildreward_types::wire::ScoreItem;

/// A [`ScoringClient`] with its own runtime. Call it from plain threads only: from inside an async
/// runtime every method returns [`ClientError::InsideRuntime`] (use [`ScoringClient`] there).
#[derive(Debug)]
pub struct BlockingClient {
    client: ScoringClient,
    runtime: tokio::runtime::Runtime,
}

impl BlockingClient {
    /// A client for the server at `endpoint` (its root, or its `/get_reward` or `/score` URL).
    pub fn new(endpoint: &str, opts: ClientOptions) -> Result<Self, ClientError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ClientError::Setup(e.to_string()))?;
        // reqwest's client must be built inside a runtime context for its connector.
        let client = {
            let _guard = runtime.enter();
            ScoringClient::new(endpoint, opts)?
        };
        Ok(Self { client, runtime })
    }

    /// The async client underneath (shares the connection pool).
    pub fn client(&self) -> &ScoringClient {
        &self.client
    }

    /// Blocking [`ScoringClient::get_rewards_with_progress`].
    pub fn get_rewards<S: AsRef<str>>(
        &self,
        texts: &[S],
        progress: &mut dyn FnMut(usize),
    ) -> Result<ItemResults<f32>, ClientError> {
        self.check_context()?;
        Ok(self
            .runtime
            .block_on(self.client.get_rewards_with_progress(texts, progress)))
    }

    /// Blocking [`ScoringClient::score_items_with_progress`].
    pub fn score_items(
        &self,
        items: &[ScoreItem],
        progress: &mut dyn FnMut(usize),
    ) -> Result<ItemResults<ItemScore>, ClientError> {
        self.check_context()?;
        Ok(self
            .runtime
            .block_on(self.client.score_items_with_progress(items, progress)))
    }

    fn check_context(&self) -> Result<(), ClientError> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(ClientError::InsideRuntime);
        }
        Ok(())
    }
}
