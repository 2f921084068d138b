//! Access tokens of one connection, or of one grant shared by several connections:
//! refreshed ahead of expiry, one refresh at a time, rotated refresh tokens stored
//! durably before the new access token is used.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use chrono::{DateTime, Utc};
use tokio::sync::Mutex;

use async_trait::async_trait;

use super::oauth::OAuthClient;
use super::stats::RuntimeStats;
use crate::clock::Clock;
use crate::error::ConnectorError;
use crate::invoice::ConnectionId;
use crate::secret::Secret;
use crate::token::{TokenSet, TokenStore};

#[derive(Debug, Default)]
struct State {
    tokens: Option<TokenSet>,
    /// Tokens obtained but not yet on disk: never used until they are.
    unsaved: Option<TokenSet>,
    last_reconnect_log: Option<DateTime<Utc>>,
}

/// Trades a refresh token for new tokens (the vendor's token endpoint).
#[async_trait]
pub trait TokenRefresher: Send + Sync {
    fn system(&self) -> &'static str;
    /// How long before expiry an access token is replaced.
    fn refresh_ahead(&self) -> std::time::Duration;
    async fn refresh(
        &self,
        refresh_token: &Secret,
        now: DateTime<Utc>,
    ) -> Result<TokenSet, ConnectorError>;
}

/// The token endpoint over HTTP.
#[derive(Debug, Clone)]
pub struct HttpRefresher {
    pub oauth: OAuthClient,
    pub http: reqwest::Client,
}

#[async_trait]
impl TokenRefresher for HttpRefresher {
    fn system(&self) -> &'static str {
        self.oauth.vendor.system
    }
    fn refresh_ahead(&self) -> std::time::Duration {
        self.oauth.vendor.refresh_ahead
    }
    async fn refresh(
        &self,
        refresh_token: &Secret,
        now: DateTime<Utc>,
    ) -> Result<TokenSet, ConnectorError> {
        self.oauth.refresh(&self.http, refresh_token, now).await
    }
}

/// One OAuth grant (one consent) that several connections may use, e.g. a Xero grant
/// covering several organisations. Xero rotates the refresh token on every refresh, so
/// connections holding separate copies of one grant void each other once the previous
/// token's grace has passed; they must share one [`TokenManager`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct GrantKey(String);

impl GrantKey {
    /// The grant whose lineage starts at `root_refresh` (the refresh token it was first
    /// configured with) for the app `client_id`. Only a digest of the token is kept: the
    /// key is a store key and shows in logs.
    pub fn from_lineage(system: &str, client_id: &str, root_refresh: &Secret) -> Self {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(client_id.as_bytes());
        h.update([0]);
        h.update(root_refresh.expose().as_bytes());
        let digest = h.finalize();
        let short: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
        GrantKey(format!("grant:{system}:{client_id}:{short}"))
    }

    /// The grant the vendor identifies as `grant_id` (Xero's `authEventId`, recorded at
    /// `overdued connect`) for the app `client_id`: every connection connected through
    /// that consent, or bound to it later, carries the same id.
    pub fn from_grant_id(system: &str, client_id: &str, grant_id: &str) -> Self {
        GrantKey(format!("grant:{system}:{client_id}:{}", grant_id.trim()))
    }

    /// The name its tokens are stored under.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for GrantKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Display for GrantKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Live shared managers, by token store (its address) and grant: connections built in
/// one process on one grant get one manager; once the last is dropped it goes away.
type Registry = HashMap<(usize, GrantKey), Weak<TokenManager>>;

fn registry() -> &'static std::sync::Mutex<Registry> {
    static REGISTRY: OnceLock<std::sync::Mutex<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// Hands out the access token of one connection, or of one grant shared by several.
pub struct TokenManager {
    connection: ConnectionId,
    grant: Option<GrantKey>,
    /// Connections on the grant, whose own earlier copies are migrated (newest wins).
    members: std::sync::Mutex<Vec<ConnectionId>>,
    refresher: Arc<dyn TokenRefresher>,
    store: Arc<dyn TokenStore>,
    clock: Arc<dyn Clock>,
    initial_refresh_token: Option<Secret>,
    stats: Arc<RuntimeStats>,
    // The async mutex is the single flight: whoever holds it refreshes, the others wait
    // and then find a fresh token.
    state: Mutex<State>,
    needs_reconnect: AtomicBool,
}

impl std::fmt::Debug for TokenManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenManager")
            .field("connection", &self.connection)
            .field("grant", &self.grant)
            .field("needs_reconnect", &self.needs_reconnect())
            .finish_non_exhaustive()
    }
}

impl TokenManager {
    pub fn new(
        connection: ConnectionId,
        refresher: Arc<dyn TokenRefresher>,
        store: Arc<dyn TokenStore>,
        clock: Arc<dyn Clock>,
        initial_refresh_token: Option<Secret>,
        stats: Arc<RuntimeStats>,
    ) -> Self {
        TokenManager {
            grant: None,
            members: std::sync::Mutex::new(vec![connection.clone()]),
            connection,
            refresher,
            store,
            clock,
            initial_refresh_token: initial_refresh_token.filter(|s| !s.is_empty()),
            stats,
            state: Mutex::new(State::default()),
            needs_reconnect: AtomicBool::new(false),
        }
    }

    /// The manager of `grant` for `connection`: the one already serving another connection
    /// on that grant and store in this process, or a new one. Its tokens are stored once,
    /// under the grant's key; copies the connections kept before are migrated on first
    /// load (the newest wins).
    pub fn shared(
        grant: &GrantKey,
        connection: ConnectionId,
        refresher: Arc<dyn TokenRefresher>,
        store: Arc<dyn TokenStore>,
        clock: Arc<dyn Clock>,
        initial_refresh_token: Option<Secret>,
        stats: Arc<RuntimeStats>,
    ) -> Arc<TokenManager> {
        let store_id = Arc::as_ptr(&store) as *const () as usize;
        let key = (store_id, grant.clone());
        let mut map = registry().lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, w| w.strong_count() > 0);
        if let Some(m) = map.get(&key).and_then(Weak::upgrade) {
            let mut members = m.members.lock().unwrap_or_else(|p| p.into_inner());
            if !members.contains(&connection) {
                tracing::info!(connection = %connection, grant = %grant, "connection shares the tokens of its grant");
                members.push(connection);
            }
            drop(members);
            return m;
        }
        let mut m = TokenManager::new(
            connection,
            refresher,
            store,
            clock,
            initial_refresh_token,
            stats,
        );
        m.grant = Some(grant.clone());
        let m = Arc::new(m);
        map.insert(key, Arc::downgrade(&m));
        m
    }

    /// Where the tokens live in the store: under the grant's key once several connections
    /// share it, else under the connection's name (so a lone connection reads and writes
    /// where it always did).
    fn store_key(&self) -> String {
        match &self.grant {
            Some(g) if self.members.lock().unwrap_or_else(|p| p.into_inner()).len() > 1 => {
                g.as_str().to_string()
            }
            _ => self.connection.as_str().to_string(),
        }
    }

    /// The grant this manager serves, when shared.
    pub fn grant(&self) -> Option<&GrantKey> {
        self.grant.as_ref()
    }

    /// True once the grant was refused: no API call is made until a person reconnects.
    pub fn needs_reconnect(&self) -> bool {
        self.needs_reconnect.load(Ordering::Relaxed)
    }

    /// The tokens in use (for status displays and tests).
    pub async fn current(&self) -> Option<TokenSet> {
        self.state.lock().await.tokens.clone()
    }

    /// A usable access token, refreshing first when it expires within the vendor's
    /// `refresh_ahead`.
    pub async fn access_token(&self) -> Result<Secret, ConnectorError> {
        let mut st = self.state.lock().await;
        self.ensure_loaded(&mut st).await?;
        let tokens = st.tokens.as_ref().ok_or_else(|| self.no_tokens())?;
        let ahead = chrono::Duration::from_std(self.refresher.refresh_ahead()).unwrap_or_default();
        if tokens.access_expires_at - ahead > self.clock.now() {
            return Ok(tokens.access_token.clone());
        }
        self.refresh_locked(&mut st, "expiring").await
    }

    /// Called after the API refused `rejected` (HTTP 401): refreshes unless another
    /// caller already replaced that token meanwhile.
    pub async fn refresh_after_rejection(
        &self,
        rejected: &Secret,
    ) -> Result<Secret, ConnectorError> {
        let mut st = self.state.lock().await;
        self.ensure_loaded(&mut st).await?;
        if let Some(t) = st.tokens.as_ref() {
            if t.access_token.expose() != rejected.expose() {
                return Ok(t.access_token.clone());
            }
        }
        self.refresh_locked(&mut st, "rejected").await
    }

    fn no_tokens(&self) -> ConnectorError {
        ConnectorError::Reauth(format!(
            "no tokens stored for connection {}: run `overdued connect {}`",
            self.connection, self.connection
        ))
    }

    fn store_err(&self, e: impl std::fmt::Display) -> ConnectorError {
        ConnectorError::transient(format!("storing tokens of {}: {e}", self.connection))
    }

    async fn ensure_loaded(&self, st: &mut State) -> Result<(), ConnectorError> {
        if let Some(pending) = st.unsaved.take() {
            if let Err(e) = self.store.save_tokens(&self.store_key(), &pending) {
                st.unsaved = Some(pending);
                return Err(self.store_err(e));
            }
            st.tokens = Some(pending);
        }
        if st.tokens.is_none() || self.needs_reconnect() {
            if st.tokens.is_none() && self.grant.is_some() {
                // Connections built side by side (one cycle task each) join the grant as
                // they are first polled: let them, so the first load already knows the
                // grant is shared and reads and writes it under the grant's key.
                tokio::task::yield_now().await;
            }
            // Re-read while flagged so a `connect` from another process is picked up.
            let loaded = self
                .store
                .load_tokens(&self.store_key())
                .map_err(|e| self.store_err(e))?;
            let loaded = self.adopt_member_copy(loaded)?;
            match loaded {
                Some(t) if !t.needs_reconnect => {
                    if self.needs_reconnect.swap(false, Ordering::Relaxed) {
                        tracing::info!(connection = %self.connection, "connection reconnected; resuming API calls");
                        st.last_reconnect_log = None;
                    }
                    st.tokens = Some(t);
                }
                Some(t) => {
                    st.tokens = Some(t);
                    self.flag_reconnect(st, "the stored grant was refused earlier");
                }
                None if !self.needs_reconnect() => {
                    if let Some(initial) = self.initial_refresh_token.clone() {
                        tracing::info!(connection = %self.connection, "no stored tokens; bootstrapping from the configured refresh token");
                        let t = self.refresh_with(st, &initial, None).await?;
                        st.tokens = Some(t);
                    }
                }
                None => {}
            }
        }
        if self.needs_reconnect() {
            self.flag_reconnect(st, "the grant was refused");
            return Err(ConnectorError::Reauth(format!(
                "connection {} needs reconnect: run `overdued connect {}`",
                self.connection, self.connection
            )));
        }
        Ok(())
    }

    /// On a grant: the tokens to use given what is stored under the current key. Any
    /// other copy of the grant (a member connection's own, kept before the grant was
    /// shared or written by a later `overdued connect`, or the grant's while it was
    /// shared) replaces it when newer and not refused, and is saved under the current key
    /// before use: the grant ends up stored once, and the newest rotation wins.
    fn adopt_member_copy(
        &self,
        stored: Option<TokenSet>,
    ) -> Result<Option<TokenSet>, ConnectorError> {
        let Some(grant) = &self.grant else {
            return Ok(stored);
        };
        let key = self.store_key();
        let mut names: Vec<String> = self
            .members
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|c| c.as_str().to_string())
            .collect();
        names.push(grant.as_str().to_string());
        let mut newest: Option<(String, TokenSet)> = None;
        for name in names.into_iter().filter(|n| *n != key) {
            let copy = self
                .store
                .load_tokens(&name)
                .map_err(|e| self.store_err(e))?;
            if let Some(t) = copy.filter(|t| !t.needs_reconnect) {
                if newest
                    .as_ref()
                    .is_none_or(|(_, n)| t.obtained_at > n.obtained_at)
                {
                    newest = Some((name, t));
                }
            }
        }
        let Some((from, mut copy)) = newest else {
            return Ok(stored);
        };
        let usable_stored = stored.as_ref().filter(|s| !s.needs_reconnect);
        if usable_stored.is_some_and(|s| s.obtained_at >= copy.obtained_at) {
            return Ok(stored);
        }
        if key == grant.as_str() {
            // A grant covers several tenants: no one tenant binds it.
            copy.bound_to = None;
        }
        self.store
            .save_tokens(&key, &copy)
            .map_err(|e| self.store_err(e))?;
        tracing::info!(from = %from, to = %key, "newer tokens of the grant adopted (the newest copy wins)");
        Ok(Some(copy))
    }

    /// Marks the connection as needing a reconnect and logs it: loudly the first time,
    /// then once a day while it lasts.
    fn flag_reconnect(&self, st: &mut State, why: &str) {
        self.needs_reconnect.store(true, Ordering::Relaxed);
        let now = self.clock.now();
        let due = st
            .last_reconnect_log
            .is_none_or(|t| now - t >= chrono::Duration::days(1));
        if due {
            let first = st.last_reconnect_log.is_none();
            st.last_reconnect_log = Some(now);
            tracing::error!(
                connection = %self.connection,
                system = self.refresher.system(),
                reminder = !first,
                "connection NEEDS RECONNECT ({why}); no API calls until `overdued connect {}` is run",
                self.connection
            );
        }
    }

    async fn refresh_locked(&self, st: &mut State, why: &str) -> Result<Secret, ConnectorError> {
        let Some(current) = st.tokens.clone() else {
            return Err(self.no_tokens());
        };
        let refresh = current.refresh_token.clone();
        let t = self.refresh_with(st, &refresh, Some(&current)).await?;
        tracing::info!(connection = %self.connection, reason = why, expires_at = %t.access_expires_at, "access token refreshed");
        let access = t.access_token.clone();
        st.tokens = Some(t);
        Ok(access)
    }

    /// Refreshes and stores the result before returning it.
    async fn refresh_with(
        &self,
        st: &mut State,
        refresh: &Secret,
        current: Option<&TokenSet>,
    ) -> Result<TokenSet, ConnectorError> {
        self.stats.refreshes.fetch_add(1, Ordering::Relaxed);
        match self.refresher.refresh(refresh, self.clock.now()).await {
            Ok(mut t) => {
                t.bound_to = current.and_then(|c| c.bound_to.clone());
                t.grant_id = current.and_then(|c| c.grant_id.clone());
                if let Err(e) = self.store.save_tokens(&self.store_key(), &t) {
                    // The vendor may already have retired the old refresh token, so the
                    // new set is kept (unused) and saved before anything else happens.
                    st.unsaved = Some(t);
                    return Err(self.store_err(e));
                }
                Ok(t)
            }
            Err(e) => {
                self.stats.refresh_failures.fetch_add(1, Ordering::Relaxed);
                if let ConnectorError::Reauth(_) = e {
                    let mut flagged = current.cloned().or_else(|| st.tokens.clone());
                    if let Some(f) = flagged.as_mut() {
                        f.needs_reconnect = true;
                        if let Err(se) = self.store.save_tokens(&self.store_key(), f) {
                            tracing::warn!(connection = %self.connection, error = %se, "could not persist the needs-reconnect flag");
                        }
                    }
                    st.tokens = flagged;
                    self.flag_reconnect(st, "the refresh token was refused (invalid_grant)");
                } else {
                    tracing::warn!(connection = %self.connection, error = %e, "token refresh failed");
                }
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::token::TokenStoreError;
    use std::sync::atomic::AtomicU32;
    use std::sync::Mutex as StdMutex;
    use std::time::Duration;

    /// Records saves and refreshes in one log so their order can be checked.
    #[derive(Default)]
    struct Recorder {
        stored: StdMutex<Option<TokenSet>>,
        events: StdMutex<Vec<String>>,
        fail_saves: AtomicBool,
    }

    impl TokenStore for Recorder {
        fn load_tokens(&self, _c: &str) -> Result<Option<TokenSet>, TokenStoreError> {
            Ok(self.stored.lock().unwrap().clone())
        }
        fn save_tokens(&self, _c: &str, t: &TokenSet) -> Result<(), TokenStoreError> {
            if self.fail_saves.load(Ordering::SeqCst) {
                return Err(TokenStoreError("disk full".into()));
            }
            self.events
                .lock()
                .unwrap()
                .push(format!("save {}", t.refresh_token.expose()));
            *self.stored.lock().unwrap() = Some(t.clone());
            Ok(())
        }
    }

    struct FakeVendor {
        n: AtomicU32,
        refuse: AtomicBool,
        log: Arc<Recorder>,
    }

    #[async_trait]
    impl TokenRefresher for FakeVendor {
        fn system(&self) -> &'static str {
            "fake"
        }
        fn refresh_ahead(&self) -> Duration {
            Duration::from_secs(300)
        }
        async fn refresh(
            &self,
            r: &Secret,
            now: DateTime<Utc>,
        ) -> Result<TokenSet, ConnectorError> {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if self.refuse.load(Ordering::SeqCst) {
                return Err(ConnectorError::Reauth("invalid_grant".into()));
            }
            let n = self.n.fetch_add(1, Ordering::SeqCst) + 1;
            self.log
                .events
                .lock()
                .unwrap()
                .push(format!("refresh {} -> R{n}", r.expose()));
            Ok(TokenSet {
                access_token: Secret::new(format!("A{n}")),
                access_expires_at: now + chrono::Duration::hours(1),
                refresh_token: Secret::new(format!("R{n}")),
                refresh_expires_at: None,
                previous_refresh_token: Some(r.clone()),
                obtained_at: now,
                bound_to: None,
                grant_id: None,
                needs_reconnect: false,
            })
        }
    }

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-23T09:00:00Z")
            .unwrap()
            .to_utc()
    }

    fn setup(
        initial: Option<&str>,
    ) -> (
        Arc<TokenManager>,
        Arc<Recorder>,
        Arc<FakeVendor>,
        Arc<ManualClock>,
    ) {
        let rec = Arc::new(Recorder::default());
        let vendor = Arc::new(FakeVendor {
            n: AtomicU32::new(0),
            refuse: AtomicBool::new(false),
            log: rec.clone(),
        });
        let clock = Arc::new(ManualClock::new(t0()));
        let m = TokenManager::new(
            ConnectionId::new("acme"),
            vendor.clone(),
            rec.clone(),
            clock.clone(),
            initial.map(Secret::new),
            Arc::new(RuntimeStats::default()),
        );
        (Arc::new(m), rec, vendor, clock)
    }

    #[tokio::test(start_paused = true)]
    async fn bootstraps_from_the_configured_refresh_token_and_stores_first() {
        let (m, rec, _v, _c) = setup(Some("R0"));
        assert_eq!(m.access_token().await.unwrap().expose(), "A1");
        assert_eq!(
            *rec.events.lock().unwrap(),
            vec!["refresh R0 -> R1", "save R1"]
        );
        // Fresh: no second refresh.
        assert_eq!(m.access_token().await.unwrap().expose(), "A1");
        assert_eq!(rec.events.lock().unwrap().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn no_tokens_and_no_bootstrap_needs_reconnect() {
        let (m, _rec, _v, _c) = setup(None);
        assert!(matches!(
            m.access_token().await,
            Err(ConnectorError::Reauth(_))
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn refreshes_ahead_of_expiry_once_for_many_callers() {
        let (m, rec, v, clock) = setup(Some("R0"));
        m.access_token().await.unwrap();
        clock.advance(chrono::Duration::minutes(56));
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let m = m.clone();
            tasks.push(tokio::spawn(async move {
                m.access_token().await.unwrap().expose().to_string()
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), "A2");
        }
        assert_eq!(
            v.n.load(Ordering::SeqCst),
            2,
            "one bootstrap and exactly one refresh"
        );
        assert_eq!(
            *rec.events.lock().unwrap(),
            vec!["refresh R0 -> R1", "save R1", "refresh R1 -> R2", "save R2"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_rejected_token_is_refreshed_once_for_concurrent_callers() {
        let (m, _rec, v, _c) = setup(Some("R0"));
        let a1 = m.access_token().await.unwrap();
        let (x, y) = tokio::join!(
            m.refresh_after_rejection(&a1),
            m.refresh_after_rejection(&a1)
        );
        assert_eq!(x.unwrap().expose(), "A2");
        assert_eq!(y.unwrap().expose(), "A2");
        assert_eq!(v.n.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn unsaved_tokens_are_never_used() {
        let (m, rec, _v, clock) = setup(Some("R0"));
        m.access_token().await.unwrap();
        clock.advance(chrono::Duration::hours(2));
        rec.fail_saves.store(true, Ordering::SeqCst);
        let e = m.access_token().await.unwrap_err();
        assert!(e.is_retryable(), "{e}");
        rec.fail_saves.store(false, Ordering::SeqCst);
        // The pending set is saved first, then used; no second refresh is needed.
        assert_eq!(m.access_token().await.unwrap().expose(), "A2");
        assert_eq!(
            rec.stored
                .lock()
                .unwrap()
                .as_ref()
                .unwrap()
                .refresh_token
                .expose(),
            "R2"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn invalid_grant_flags_the_connection_and_stops_calls() {
        let (m, rec, v, clock) = setup(Some("R0"));
        m.access_token().await.unwrap();
        clock.advance(chrono::Duration::hours(2));
        v.refuse.store(true, Ordering::SeqCst);
        assert!(matches!(
            m.access_token().await,
            Err(ConnectorError::Reauth(_))
        ));
        assert!(m.needs_reconnect());
        assert!(
            rec.stored.lock().unwrap().as_ref().unwrap().needs_reconnect,
            "the flag is persisted"
        );
        let refreshes = v.n.load(Ordering::SeqCst);
        for _ in 0..5 {
            assert!(matches!(
                m.access_token().await,
                Err(ConnectorError::Reauth(_))
            ));
        }
        assert_eq!(
            v.n.load(Ordering::SeqCst),
            refreshes,
            "no vendor call while flagged"
        );

        // A reconnect (new tokens written by `overdued connect`) is picked up.
        let mut fresh = rec.stored.lock().unwrap().clone().unwrap();
        fresh.needs_reconnect = false;
        fresh.access_token = Secret::new("A-new");
        fresh.access_expires_at = clock.now() + chrono::Duration::hours(1);
        *rec.stored.lock().unwrap() = Some(fresh);
        assert_eq!(m.access_token().await.unwrap().expose(), "A-new");
        assert!(!m.needs_reconnect());
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_manager_resumes_from_the_store_after_a_refresh() {
        let (m, rec, v, clock) = setup(Some("R0"));
        m.access_token().await.unwrap();
        clock.advance(chrono::Duration::hours(2));
        m.access_token().await.unwrap();
        drop(m);
        // As after a crash: a new manager with a stale configured token reads the store.
        let m2 = TokenManager::new(
            ConnectionId::new("acme"),
            v.clone(),
            rec.clone(),
            clock.clone(),
            Some(Secret::new("R0")),
            Arc::new(RuntimeStats::default()),
        );
        assert_eq!(m2.access_token().await.unwrap().expose(), "A2");
        clock.advance(chrono::Duration::hours(2));
        assert_eq!(m2.access_token().await.unwrap().expose(), "A3");
        assert!(rec
            .events
            .lock()
            .unwrap()
            .contains(&"refresh R2 -> R3".to_string()));
    }

    /// A store keyed by name, as the daemon's is.
    #[derive(Default)]
    struct Keyed {
        map: StdMutex<std::collections::BTreeMap<String, TokenSet>>,
    }

    impl TokenStore for Keyed {
        fn load_tokens(&self, c: &str) -> Result<Option<TokenSet>, TokenStoreError> {
            Ok(self.map.lock().unwrap().get(c).cloned())
        }
        fn save_tokens(&self, c: &str, t: &TokenSet) -> Result<(), TokenStoreError> {
            self.map.lock().unwrap().insert(c.to_string(), t.clone());
            Ok(())
        }
    }

    fn vendor() -> Arc<FakeVendor> {
        Arc::new(FakeVendor {
            n: AtomicU32::new(0),
            refuse: AtomicBool::new(false),
            log: Arc::new(Recorder::default()),
        })
    }

    fn on_grant(
        grant: &GrantKey,
        name: &str,
        v: &Arc<FakeVendor>,
        store: &Arc<Keyed>,
        clock: &Arc<ManualClock>,
    ) -> Arc<TokenManager> {
        TokenManager::shared(
            grant,
            ConnectionId::new(name),
            v.clone(),
            store.clone(),
            clock.clone(),
            Some(Secret::new("R0")),
            Arc::new(RuntimeStats::default()),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn connections_on_one_grant_share_one_manager_and_one_refresh() {
        let (v, store) = (vendor(), Arc::new(Keyed::default()));
        let clock = Arc::new(ManualClock::new(t0()));
        let grant = GrantKey::from_lineage("fake", "app", &Secret::new("R0"));
        let managers: Vec<_> = ["a", "b", "c"]
            .iter()
            .map(|n| on_grant(&grant, n, &v, &store, &clock))
            .collect();
        assert!(Arc::ptr_eq(&managers[0], &managers[2]));
        // Another store is another grant holder: not shared.
        let elsewhere = on_grant(&grant, "a", &v, &Arc::new(Keyed::default()), &clock);
        assert!(!Arc::ptr_eq(&managers[0], &elsewhere));
        drop(elsewhere);

        managers[0].access_token().await.unwrap();
        clock.advance(chrono::Duration::minutes(56));
        let mut tasks = Vec::new();
        for m in managers.iter().cycle().take(9) {
            let m = m.clone();
            tasks.push(tokio::spawn(async move {
                m.access_token().await.unwrap().expose().to_string()
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), "A2");
        }
        assert_eq!(v.n.load(Ordering::SeqCst), 2, "bootstrap and one refresh");
        let map = store.map.lock().unwrap();
        assert_eq!(
            map.keys().cloned().collect::<Vec<_>>(),
            vec![grant.as_str().to_string()],
            "stored once, under the grant"
        );
        assert!(
            !grant.as_str().contains("R0"),
            "the token is not in the key"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_newest_copy_of_a_grant_wins_and_refused_copies_never_do() {
        let (v, store) = (vendor(), Arc::new(Keyed::default()));
        let clock = Arc::new(ManualClock::new(t0()));
        let copy = |r: &str, at: DateTime<Utc>, refused: bool| TokenSet {
            access_token: Secret::new(format!("A-{r}")),
            access_expires_at: at + chrono::Duration::hours(1),
            refresh_token: Secret::new(r),
            refresh_expires_at: None,
            previous_refresh_token: None,
            obtained_at: at,
            bound_to: Some(format!("tenant-{r}")),
            grant_id: None,
            needs_reconnect: refused,
        };
        {
            let mut map = store.map.lock().unwrap();
            map.insert(
                "a".into(),
                copy("Ra", t0() - chrono::Duration::minutes(20), false),
            );
            map.insert(
                "b".into(),
                copy("Rb", t0() - chrono::Duration::minutes(10), false),
            );
            map.insert(
                "c".into(),
                copy("Rc", t0() - chrono::Duration::minutes(1), true),
            );
        }
        let grant = GrantKey::from_lineage("fake", "app", &Secret::new("R0"));
        let ms: Vec<_> = ["a", "b", "c"]
            .iter()
            .map(|n| on_grant(&grant, n, &v, &store, &clock))
            .collect();
        assert_eq!(ms[2].access_token().await.unwrap().expose(), "A-Rb");
        assert_eq!(v.n.load(Ordering::SeqCst), 0, "b's copy is still fresh");
        let shared = store
            .map
            .lock()
            .unwrap()
            .get(grant.as_str())
            .cloned()
            .expect("saved under the grant");
        assert_eq!(shared.refresh_token.expose(), "Rb");
        assert_eq!(shared.bound_to, None, "a grant binds no one tenant");
        clock.advance(chrono::Duration::hours(1));
        assert_eq!(ms[0].access_token().await.unwrap().expose(), "A1");
        assert!(v
            .log
            .events
            .lock()
            .unwrap()
            .contains(&"refresh Rb -> R1".to_string()));
    }
}
