//! The board's web server (axum): login, sessions, CSRF, the live board over Server-Sent Events,
//! caller pages with the organisation's conclusion, and the audit page. HTTPS with rustls;
//! plain HTTP only on a loopback address.

pub mod evidence;
pub mod i18n;
pub mod live;
pub mod pages;
pub mod reports;
mod serve;

use std::collections::{BTreeMap, HashSet};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Form, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::Stream;
use serde::Deserialize;
use tokio::sync::{mpsc, watch};

pub use serve::{ServeError, serve, tls_config};

use super::accounts::{self, LoginThrottle};
use super::store::{AckRow, Applied, BoardData, SessionRow, Store, UserRow};
use crate::config::Language;
use i18n::Texts;

const SESSION_COOKIE: &str = "cg_session";
const LOGIN_COOKIE: &str = "cg_login";
/// How long ended calls stay on the board.
const RECENT: Duration = Duration::from_secs(3600);
/// How often an open board's live stream checks that its session still stands and what its
/// account may see.
const SESSION_RECHECK: Duration = Duration::from_secs(5);

/// A lead took a call: what the bus side sends to the agent's workstation.
#[derive(Debug, Clone, PartialEq)]
pub struct AckOut {
    /// The ack's id (also its `Nats-Msg-Id`).
    pub id: String,
    /// Site of the call.
    pub site: String,
    /// The workstation's agent token on the bus (its ack subject).
    pub agent: String,
    /// PBX call id.
    pub call_id: String,
    /// The lead's display name.
    pub lead: String,
    /// When (Unix ms).
    pub at_ms: i64,
    /// The escalation answered, if any.
    pub escalation_id: Option<String>,
}

/// What the web server needs from the service.
#[derive(Debug, Clone)]
pub struct WebOptions {
    /// Default language (Accept-Language may choose the other).
    pub language: Language,
    /// Cookies get `Secure` (the server runs HTTPS).
    pub secure_cookies: bool,
    /// Session lifetime.
    pub session_ttl: Duration,
    /// Workstations count as silent after this long without heartbeat (`None`: two intervals).
    pub stale_after: Option<Duration>,
    /// Team → agents; a lead sees the agents of their teams.
    pub teams: BTreeMap<String, Vec<String>>,
    /// Login attempts allowed.
    pub login_limit: accounts::LoginLimit,
}

/// Most password checks at once: argon2id takes 19 MiB and about half a second of a core each,
/// so a burst of logins waits its turn instead of taking the server's memory.
pub const PASSWORD_CHECKS: usize = 2;
/// Most reports built at once: each reads a period's calls with two queries and renders them,
/// and the store's pool is shared with the board and the bus; more wait their turn.
pub const REPORTS_AT_ONCE: usize = 2;

/// Shared by every request.
pub struct AppState {
    store: Store,
    opts: WebOptions,
    throttle: LoginThrottle,
    /// Password checks running at once (see [`PASSWORD_CHECKS`]).
    hashing: tokio::sync::Semaphore,
    /// Reports being built (see [`REPORTS_AT_ONCE`]).
    reports: tokio::sync::Semaphore,
    updates: watch::Receiver<u64>,
    notify: watch::Sender<u64>,
    acks: mpsc::UnboundedSender<AckOut>,
    /// The newest board snapshot for live updates (see [`live`]).
    feed: watch::Sender<Option<Arc<live::Snapshot>>>,
    /// What changed since the last snapshot.
    changes: live::BoardChanges,
}

impl AppState {
    /// State over `store`; `notify` is bumped whenever the board may have changed, `acks`
    /// receives the acks to publish. Starts the live-update feed, which ends with the state
    /// (call within a tokio runtime).
    pub fn new(
        store: Store,
        opts: WebOptions,
        notify: watch::Sender<u64>,
        acks: mpsc::UnboundedSender<AckOut>,
    ) -> Arc<AppState> {
        let updates = notify.subscribe();
        let state = Arc::new(AppState {
            store,
            throttle: LoginThrottle::new(opts.login_limit),
            hashing: tokio::sync::Semaphore::new(PASSWORD_CHECKS),
            reports: tokio::sync::Semaphore::new(REPORTS_AT_ONCE),
            opts,
            updates: updates.clone(),
            notify,
            acks,
            feed: watch::Sender::new(None),
            changes: live::BoardChanges::default(),
        });
        tokio::spawn(live::feed(Arc::downgrade(&state), updates));
        state
    }

    /// Where writers outside the web server (the bus consumer) say what they changed, before
    /// they bump the `notify` counter.
    pub fn changes(&self) -> live::BoardChanges {
        self.changes.clone()
    }

    fn stale_after_ms(&self) -> Option<i64> {
        self.opts.stale_after.map(|d| d.as_millis() as i64)
    }

    fn changed(&self, call_key: &str) {
        self.changes.call(call_key);
        self.notify.send_modify(|v| *v = v.wrapping_add(1));
    }
}

type Shared = Arc<AppState>;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The router of the board.
pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/", get(board_page))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/events", get(events))
        .route("/api/board", get(board_json))
        .route("/ack", post(ack))
        .route("/call", get(call_page))
        .route("/caller", get(caller_page))
        .route("/caller/conclusion", post(conclusion))
        .route("/audit", get(audit_page))
        .route("/report", get(reports::report_route))
        .route("/incident.pdf", get(reports::incident_route))
        .route("/evidence", get(evidence::page))
        .route("/evidence/recording", get(evidence::recording))
        .route("/evidence/recheck", post(evidence::recheck))
        .with_state(state)
}

/// The request's language.
struct Lang(&'static Texts);

impl FromRequestParts<Shared> for Lang {
    type Rejection = Infallible;
    async fn from_request_parts(parts: &mut Parts, s: &Shared) -> Result<Self, Infallible> {
        let accept = parts
            .headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok());
        Ok(Lang(i18n::texts(i18n::negotiate(accept, s.opts.language))))
    }
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn set_cookie(name: &str, value: &str, max_age: Duration, secure: bool) -> HeaderValue {
    let v = format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        max_age.as_secs(),
        if secure { "; Secure" } else { "" }
    );
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn same(a: &str, b: &str) -> bool {
    // Constant time over the length of the expected token.
    a.len() == b.len()
        && !a.is_empty()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A logged-in user.
struct Viewer {
    user: UserRow,
    session: SessionRow,
    token_hash: String,
    agents: Option<HashSet<String>>,
}

/// The rows of `rows` that belong to one of the calls `keys`.
fn of_calls<T: Clone>(rows: &[T], keys: &HashSet<&str>, key: impl Fn(&T) -> &String) -> Vec<T> {
    rows.iter()
        .filter(|r| keys.contains(key(r).as_str()))
        .cloned()
        .collect()
}

impl Viewer {
    /// The answer to a form whose CSRF token is not this session's (logged with what was
    /// refused); `None` when the token is right.
    fn csrf_refusal(&self, token: &str, what: &str, t: &Texts) -> Option<Response> {
        if same(token, &self.session.csrf) {
            return None;
        }
        tracing::warn!(user = %self.user.name, "{what} refused: bad CSRF token");
        Some(bad_request(t))
    }

    fn sees(&self, agent: &str) -> bool {
        self.agents.as_ref().is_none_or(|a| a.contains(agent))
    }

    fn nav(&self) -> Option<(&str, &str, bool)> {
        Some((&self.user.display_name, &self.session.csrf, self.user.admin))
    }

    /// What this viewer may see of `data`; `None` when that is all of it (an admin).
    fn visible(&self, data: &BoardData) -> Option<BoardData> {
        self.agents.as_ref()?;
        let mut mine = BoardData {
            calls: data
                .calls
                .iter()
                .filter(|c| self.sees(&c.agent))
                .cloned()
                .collect(),
            workstations: data
                .workstations
                .iter()
                .filter(|w| self.sees(&w.agent))
                .cloned()
                .collect(),
            ..BoardData::default()
        };
        let keys: HashSet<&str> = mine.calls.iter().map(|c| c.key.as_str()).collect();
        mine.marks = of_calls(&data.marks, &keys, |m| &m.call_key);
        mine.escalations = of_calls(&data.escalations, &keys, |e| &e.call_key);
        mine.acks = of_calls(&data.acks, &keys, |a| &a.call_key);
        Some(mine)
    }

    fn filter(&self, data: &mut BoardData) {
        if self.agents.is_none() {
            return;
        }
        data.calls.retain(|c| self.sees(&c.agent));
        let keys: HashSet<String> = data.calls.iter().map(|c| c.key.clone()).collect();
        data.marks.retain(|m| keys.contains(&m.call_key));
        data.escalations.retain(|e| keys.contains(&e.call_key));
        data.acks.retain(|a| keys.contains(&a.call_key));
        data.workstations.retain(|w| self.sees(&w.agent));
    }
}

/// No session: pages send to the login form, everything else is 401.
enum Rejection {
    Login,
    Unauthorized,
    Internal,
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        match self {
            Rejection::Login => Redirect::to("/login").into_response(),
            Rejection::Unauthorized => (StatusCode::UNAUTHORIZED, "login required").into_response(),
            Rejection::Internal => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        }
    }
}

impl FromRequestParts<Shared> for Viewer {
    type Rejection = Rejection;
    async fn from_request_parts(parts: &mut Parts, s: &Shared) -> Result<Self, Rejection> {
        let wants_page = parts.method == axum::http::Method::GET
            && !parts.uri.path().starts_with("/api/")
            && parts.uri.path() != "/events";
        let refuse = if wants_page {
            Rejection::Login
        } else {
            Rejection::Unauthorized
        };
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(refuse);
        };
        match Viewer::of_token(s, accounts::token_hash(&token)).await {
            Ok(Some(v)) => Ok(v),
            Ok(None) => Err(refuse),
            Err(()) => Err(Rejection::Internal),
        }
    }
}

impl Viewer {
    /// The viewer of a session token's hash as the store has it now: `None` once the session
    /// has ended or expired, or its account is gone; `Err` when the store cannot say (logged).
    async fn of_token(s: &Shared, token_hash: String) -> Result<Option<Viewer>, ()> {
        let session = match s.store.session(&token_hash, now_ms()).await {
            Ok(Some(sess)) => sess,
            Ok(None) => return Ok(None),
            Err(e) => {
                tracing::error!(error = %e, "session lookup failed");
                return Err(());
            }
        };
        let user = match s.store.user(&session.user_name).await {
            Ok(Some(u)) => u,
            Ok(None) => return Ok(None),
            Err(e) => {
                tracing::error!(error = %e, "user lookup failed");
                return Err(());
            }
        };
        let agents = (!user.admin).then(|| {
            user.teams
                .iter()
                .filter_map(|t| s.opts.teams.get(t))
                .flatten()
                .cloned()
                .collect()
        });
        Ok(Some(Viewer {
            user,
            session,
            token_hash,
            agents,
        }))
    }
}

fn bad_request(t: &Texts) -> Response {
    (
        StatusCode::FORBIDDEN,
        Html(pages::message(t, t.bad_request)),
    )
        .into_response()
}

fn forbidden(t: &Texts) -> Response {
    (StatusCode::FORBIDDEN, Html(pages::message(t, t.forbidden))).into_response()
}

fn not_found(t: &Texts) -> Response {
    (StatusCode::NOT_FOUND, Html(pages::message(t, t.not_found))).into_response()
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "floor web request failed");
    StatusCode::INTERNAL_SERVER_ERROR.into_response()
}

async fn audit(s: &AppState, v: &Viewer, action: &str, target: &str, detail: &str) {
    if let Err(e) = s
        .store
        .audit(&v.user.name, action, target, detail, now_ms())
        .await
    {
        tracing::error!(error = %e, action, "cannot write the audit line");
    }
}

// ---- login ----------------------------------------------------------------------------------

async fn login_page(State(s): State<Shared>, Lang(t): Lang) -> Response {
    let token = accounts::new_token();
    (
        [(
            header::SET_COOKIE,
            set_cookie(
                LOGIN_COOKIE,
                &token,
                Duration::from_secs(3600),
                s.opts.secure_cookies,
            ),
        )],
        Html(pages::login(t, &token, None)),
    )
        .into_response()
}

#[derive(Deserialize)]
struct LoginForm {
    name: String,
    password: String,
    csrf: String,
}

async fn login(
    State(s): State<Shared>,
    Lang(t): Lang,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if !same(&f.csrf, &expected) {
        return bad_request(t);
    }
    let addr: IpAddr = peer.ip();
    let again = |msg: &str, status: StatusCode| {
        (status, Html(pages::login(t, &expected, Some(msg)))).into_response()
    };
    // The name as typed, cut for the log (a made-up name can be megabytes long).
    let shown: String = f.name.chars().take(64).collect();
    let began = Instant::now();
    if !s.throttle.begin(&f.name, addr, began) {
        tracing::warn!(user = %shown, %addr, "login refused: too many attempts");
        return again(t.login_throttled, StatusCode::TOO_MANY_REQUESTS);
    }
    let user = match s.store.user(&f.name).await {
        Ok(u) => u,
        Err(e) => return internal(e),
    };
    // At most a few password checks at once (each takes 19 MiB and most of a core); the
    // others wait their turn.
    let Ok(_permit) = s.hashing.acquire().await else {
        return internal("the password checks are closed");
    };
    // Verify even without a user, so timing does not tell which names exist.
    let ok = match &user {
        Some(u) => {
            let (pw, phc) = (f.password.clone(), u.password_hash.clone());
            tokio::task::spawn_blocking(move || accounts::verify_password(&pw, &phc))
                .await
                .unwrap_or(false)
        }
        None => {
            let pw = f.password.clone();
            tokio::task::spawn_blocking(move || accounts::verify_nobody(&pw))
                .await
                .unwrap_or(false)
        }
    };
    let Some(user) = user.filter(|_| ok) else {
        tracing::info!(user = %shown, %addr, "login failed");
        return again(t.login_failed, StatusCode::UNAUTHORIZED);
    };
    s.throttle.succeeded(&f.name, addr, began);
    let token = accounts::new_token();
    let csrf = accounts::new_token();
    if token.is_empty() || csrf.is_empty() {
        return internal("no randomness for a session token");
    }
    let now = now_ms();
    let session = SessionRow {
        user_name: user.name.clone(),
        csrf,
        expires_ms: now + s.opts.session_ttl.as_millis() as i64,
    };
    if let Err(e) = s
        .store
        .add_session(&accounts::token_hash(&token), &session, now)
        .await
    {
        return internal(e);
    }
    let _ = s
        .store
        .audit(&user.name, "login", &addr.to_string(), "", now)
        .await;
    let mut res = Redirect::to("/").into_response();
    res.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(
            SESSION_COOKIE,
            &token,
            s.opts.session_ttl,
            s.opts.secure_cookies,
        ),
    );
    res.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(LOGIN_COOKIE, "", Duration::ZERO, s.opts.secure_cookies),
    );
    res
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(
    State(s): State<Shared>,
    Lang(t): Lang,
    v: Viewer,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Some(r) = v.csrf_refusal(&f.csrf, "logout", t) {
        return r;
    }
    if let Err(e) = s.store.remove_session(&v.token_hash, now_ms()).await {
        return internal(e);
    }
    let mut res = Redirect::to("/login").into_response();
    res.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, "", Duration::ZERO, s.opts.secure_cookies),
    );
    res
}

// ---- board ----------------------------------------------------------------------------------

async fn board_data(s: &AppState, v: &Viewer) -> Result<BoardData, Response> {
    let mut data = s
        .store
        .board(now_ms() - RECENT.as_millis() as i64)
        .await
        .map_err(internal)?;
    v.filter(&mut data);
    Ok(data)
}

async fn board_page(State(s): State<Shared>, Lang(t): Lang, v: Viewer) -> Response {
    let data = match board_data(&s, &v).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let body = pages::board(t, &data, now_ms(), s.stale_after_ms(), &v.session.csrf);
    Html(pages::page(t, t.title, v.nav(), &body)).into_response()
}

async fn board_json(State(s): State<Shared>, v: Viewer) -> Response {
    match board_data(&s, &v).await {
        Ok(d) => Json(d).into_response(),
        Err(r) => r,
    }
}

async fn events(
    State(s): State<Shared>,
    Lang(t): Lang,
    v: Viewer,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut feed = s.feed.subscribe();
    let stream = async_stream(move |tx| async move {
        let mut v = v;
        // The first board comes from a query of its own (the shared snapshot may be older than
        // this page); after it only the rows that changed, from snapshots at least as new.
        let since = *s.updates.borrow();
        let csrf = v.session.csrf.clone();
        let render =
            |d: &BoardData| pages::board_parts(t, d, now_ms(), s.stale_after_ms(), &csrf, false);
        let mut shown = match board_data(&s, &v).await {
            Ok(d) => render(&d),
            Err(_) => return,
        };
        if tx
            .send(Ok(Event::default().event("board").data(shown.html())))
            .await
            .is_err()
        {
            return;
        }
        let mut recheck = tokio::time::interval_at(
            tokio::time::Instant::now() + SESSION_RECHECK,
            SESSION_RECHECK,
        );
        loop {
            tokio::select! {
                r = feed.changed() => if r.is_err() { return },
                _ = recheck.tick() => {
                    // A stream outlives the request that checked its session: an account
                    // logged out, removed or changed from the command line must not keep
                    // seeing what it no longer may.
                    match Viewer::of_token(&s, v.token_hash.clone()).await {
                        Ok(Some(now)) if now.user == v.user => {}
                        Ok(Some(now)) => {
                            v = now;
                            shown = match board_data(&s, &v).await {
                                Ok(d) => render(&d),
                                Err(_) => return,
                            };
                            let board = Event::default().event("board").data(shown.html());
                            if tx.send(Ok(board)).await.is_err() {
                                return;
                            }
                        }
                        Ok(None) => {
                            let _ = tx.send(Ok(Event::default().event("ended").data(""))).await;
                            return;
                        }
                        // The store cannot say now: asked again at the next check.
                        Err(()) => {}
                    }
                    continue;
                }
                _ = tx.closed() => return,
            }
            let Some(snap) = feed.borrow_and_update().clone() else {
                continue;
            };
            if snap.version < since {
                continue;
            }
            let next = match v.visible(&snap.data) {
                Some(mine) => render(&mine),
                None => render(&snap.data),
            };
            let Some(patch) = live::diff(&shown, &next) else {
                continue;
            };
            let json = match serde_json::to_string(&patch) {
                Ok(j) => j,
                Err(e) => {
                    tracing::error!(error = %e, "cannot encode a board patch");
                    return;
                }
            };
            if tx
                .send(Ok(Event::default().event("patch").data(json)))
                .await
                .is_err()
            {
                return;
            }
            shown = next;
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// A stream fed by a task: the task ends when the client goes away.
fn async_stream<F, Fut>(f: F) -> impl Stream<Item = Result<Event, Infallible>>
where
    F: FnOnce(mpsc::Sender<Result<Event, Infallible>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    // Small: a page that reads slowly gets the newest state next, not a queue of old ones.
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(f(tx));
    tokio_stream_from(rx)
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: mpsc::Receiver<T>,
) -> impl Stream<Item = T> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[derive(Deserialize)]
struct AckForm {
    csrf: String,
    call: String,
}

async fn ack(
    State(s): State<Shared>,
    Lang(t): Lang,
    v: Viewer,
    Form(f): Form<AckForm>,
) -> Response {
    if let Some(r) = v.csrf_refusal(&f.csrf, "ack", t) {
        return r;
    }
    let call = match s.store.call(&f.call).await {
        Ok(Some(c)) => c,
        Ok(None) => return not_found(t),
        Err(e) => return internal(e),
    };
    if !v.sees(&call.agent) {
        return forbidden(t);
    }
    let data = match s.store.call_details(&call.key).await {
        Ok(d) => d,
        Err(e) => return internal(e),
    };
    let escalation_id = data
        .escalations
        .iter()
        .rfind(|e| e.call_key == call.key)
        .map(|e| e.id.clone());
    let now = now_ms();
    let Some(id) = accounts::new_token().get(..32).map(String::from) else {
        return internal("no randomness for an ack id");
    };
    let row = AckRow {
        id: id.clone(),
        call_key: call.key.clone(),
        lead: v.user.display_name.clone(),
        user_name: v.user.name.clone(),
        at_ms: now,
    };
    match s.store.add_ack(&row).await {
        Ok(Applied::New | Applied::Duplicate | Applied::Refused) => {}
        Err(e) => return internal(e),
    }
    audit(&s, &v, "ack", &call.key, "").await;
    let _ = s.acks.send(AckOut {
        id,
        site: call.site.clone(),
        agent: if call.ws_agent.is_empty() {
            call.agent.clone()
        } else {
            call.ws_agent.clone()
        },
        call_id: call.call_id.clone(),
        lead: v.user.display_name.clone(),
        at_ms: now,
        escalation_id,
    });
    s.changed(&call.key);
    Redirect::to("/").into_response()
}

#[derive(Deserialize)]
struct KeyQuery {
    key: String,
}

async fn call_page(
    State(s): State<Shared>,
    Lang(t): Lang,
    v: Viewer,
    Query(k): Query<KeyQuery>,
) -> Response {
    let call = match s.store.call(&k.key).await {
        Ok(Some(c)) => c,
        Ok(None) => return not_found(t),
        Err(e) => return internal(e),
    };
    if !v.sees(&call.agent) {
        return forbidden(t);
    }
    audit(&s, &v, "view.call", &call.key, "").await;
    let data = match s.store.call_details(&call.key).await {
        Ok(d) => d,
        Err(e) => return internal(e),
    };
    let body = pages::call(t, &call, &data);
    Html(pages::page(t, t.call, v.nav(), &body)).into_response()
}

async fn caller_page(
    State(s): State<Shared>,
    Lang(t): Lang,
    v: Viewer,
    Query(k): Query<KeyQuery>,
) -> Response {
    let mut h = match s.store.caller_history(&k.key, 500).await {
        Ok(h) => h,
        Err(e) => return internal(e),
    };
    h.calls.retain(|c| v.sees(&c.agent));
    let keys: HashSet<&str> = h.calls.iter().map(|c| c.key.as_str()).collect();
    h.marks.retain(|m| keys.contains(m.call_key.as_str()));
    audit(&s, &v, "view.caller", &k.key, "").await;
    let body = pages::caller(t, &k.key, &h, &v.session.csrf);
    Html(pages::page(t, t.caller_page, v.nav(), &body)).into_response()
}

#[derive(Deserialize)]
struct ConclusionForm {
    csrf: String,
    key: String,
    text: String,
    phrase: String,
}

async fn conclusion(
    State(s): State<Shared>,
    Lang(t): Lang,
    v: Viewer,
    Form(f): Form<ConclusionForm>,
) -> Response {
    if let Some(r) = v.csrf_refusal(&f.csrf, "conclusion", t) {
        return r;
    }
    let (text, phrase) = (f.text.trim(), f.phrase.trim());
    if f.key.is_empty() || text.is_empty() || phrase.is_empty() {
        return bad_request(t);
    }
    let version = match s
        .store
        .add_conclusion(&f.key, text, phrase, &v.user.display_name, now_ms())
        .await
    {
        Ok(v) => v,
        Err(e) => return internal(e),
    };
    audit(&s, &v, "conclusion", &f.key, &format!("version {version}")).await;
    Redirect::to(&format!("/caller?key={}", pages::q(&f.key))).into_response()
}

/// Lines on one audit page.
const AUDIT_PAGE: usize = 500;

#[derive(Deserialize, Default)]
struct AuditQuery {
    /// Only lines with an id below this one (the next page back).
    before: Option<i64>,
    /// Only this user's lines.
    #[serde(default)]
    user: String,
}

async fn audit_page(
    State(s): State<Shared>,
    Lang(t): Lang,
    v: Viewer,
    Query(q): Query<AuditQuery>,
) -> Response {
    if !v.user.admin {
        return forbidden(t);
    }
    let user = (!q.user.is_empty()).then_some(q.user.as_str());
    match s.store.audit_lines(AUDIT_PAGE as i64, q.before, user).await {
        Ok(lines) => {
            let older = (lines.len() == AUDIT_PAGE)
                .then(|| lines.last().map(|l| l.id))
                .flatten();
            let body = pages::audit(t, &lines, user, older);
            Html(pages::page(t, t.audit, v.nav(), &body)).into_response()
        }
        Err(e) => internal(e),
    }
}
