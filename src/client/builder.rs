//! [`ClientBuilder`]: where a client connects, with which token and options; `build`
//! spawns its task.

use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::{Semaphore, broadcast, mpsc, watch};

use super::connect::Connector;
use super::error::{BoxError, ClientError, TokenReason};
use super::event::ConnectionState;
use super::options::{ClientOptions, TokenPlacement};
use super::task::{Task, TokenSource};
use super::{Client, Inner};

/// Commands waiting for the client task. Bounded: a handle waits (within its request
/// timeout) when the task is this far behind, which it only is while busy with a
/// burst of frames.
const COMMAND_BUFFER: usize = 64;

/// Builds a [`Client`]: where, with which token, with which options.
pub struct ClientBuilder {
    url: String,
    token: TokenSource,
    placement: TokenPlacement,
    options: ClientOptions,
    #[cfg(feature = "tls")]
    tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
    seed: Option<u64>,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the token.
        let token = match self.token {
            TokenSource::None => "none",
            TokenSource::Static(_) => "static",
            TokenSource::Provider(_) => "provider",
        };
        f.debug_struct("ClientBuilder")
            .field("url", &self.url)
            .field("token", &token)
            .field("placement", &self.placement)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    pub(super) fn new(url: String) -> Self {
        ClientBuilder {
            url,
            token: TokenSource::None,
            placement: TokenPlacement::default(),
            options: ClientOptions::default(),
            #[cfg(feature = "tls")]
            tls: None,
            seed: None,
        }
    }

    /// Connect with this token, always. A token the server refuses (HTTP 401) or
    /// expires (1008) stops the client: use
    /// [`token_provider`](Self::token_provider) to renew tokens.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = TokenSource::Static(token.into());
        self
    }

    /// Get tokens from `provider`: before the first connection
    /// ([`TokenReason::Initial`]), when the server closes with 1008 `token expired`
    /// ([`TokenReason::Expired`]), and when it refuses with 401 a token it had accepted
    /// before ([`TokenReason::Refused`]). The client reconnects at once with the new
    /// token. If the provider fails (or takes longer than the handshake timeout), or
    /// the server refuses the token it just gave, the client gives up: retry inside
    /// the provider if your token service may be briefly away.
    pub fn token_provider<F, Fut, E>(mut self, provider: F) -> Self
    where
        F: Fn(TokenReason) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, E>> + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        self.token = TokenSource::Provider(Arc::new(move |why| {
            let fut = provider(why);
            Box::pin(async move { fut.await.map_err(Into::into) })
        }));
        self
    }

    /// Where the token goes: the `Authorization: Bearer` header (the default) or a
    /// query parameter.
    pub fn token_placement(mut self, placement: TokenPlacement) -> Self {
        self.placement = placement;
        self
    }

    /// The token in the `token` query parameter, as browsers send it (the built-in
    /// authenticators' name): for servers that read only the query.
    pub fn token_in_query(self) -> Self {
        self.token_placement(TokenPlacement::Query("token".into()))
    }

    /// Replaces the options.
    pub fn options(mut self, options: ClientOptions) -> Self {
        self.options = options;
        self
    }

    /// Changes the options in place: `.configure(|o| o.backoff.max_attempts = Some(5))`.
    pub fn configure(mut self, f: impl FnOnce(&mut ClientOptions)) -> Self {
        f(&mut self.options);
        self
    }

    /// The rustls configuration for `wss://` (which roots to trust), for instance
    /// [`tls::client_config_trusting`](crate::tls::client_config_trusting). Required
    /// for `wss://` URLs: the crate bundles no root store.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls_config(
        mut self,
        config: impl Into<Arc<tokio_rustls::rustls::ClientConfig>>,
    ) -> Self {
        self.tls = Some(config.into());
        self
    }

    /// Seeds the backoff's jitter, for reproducible waits in tests. Default: seeded
    /// from the operating system, so clients do not pick the same waits.
    pub fn jitter_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Starts the client: spawns its task on the current tokio runtime, which starts
    /// connecting at once. Returns without waiting for the connection
    /// ([`Client::connected`] waits). Errors: a bad URL, `wss://` without TLS
    /// configuration, no runtime.
    pub fn build(self) -> Result<Client, ClientError> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| ClientError::Config("build a client inside a tokio runtime".into()))?;
        let connector = Connector::new(
            &self.url,
            self.placement,
            &self.options,
            #[cfg(feature = "tls")]
            self.tls,
        )?;
        let (commands_tx, commands_rx) = mpsc::channel(COMMAND_BUFFER);
        let (state_tx, state_rx) = watch::channel(ConnectionState::Connecting { attempt: 1 });
        let (events_tx, events_rx) = broadcast::channel(self.options.event_buffer.max(1));
        let rng = match self.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_rng(&mut rand::rng()),
        };
        let inner = Arc::new(Inner {
            commands: commands_tx,
            state: state_rx,
            events: events_tx.downgrade(),
            first_events: Mutex::new(Some(events_rx)),
            permits: Semaphore::new(self.options.max_pending_requests.max(1)),
            room_buffer: self.options.room_buffer,
            generations: AtomicU64::new(0),
        });
        let timeout = self.options.request_timeout;
        let task = Task::new(
            connector,
            self.token,
            self.options,
            commands_rx,
            state_tx,
            events_tx,
            rng,
        );
        runtime.spawn(task.run());
        Ok(Client { inner, timeout })
    }
}
