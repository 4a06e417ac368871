//! # jit-provision demo
//!
//! A small axum app that logs people in with OpenID Connect and creates a local user for
//! them at their first login ("just-in-time provisioning"). It needs no set-up:
//!
//! ```text
//! cargo run --example demo                                  # app + built-in development IdP
//! cargo run --example demo -- --listen 127.0.0.1:8080       # another address
//! cargo run --example demo -- --config examples/demo.toml   # your own IdP (Keycloak, ...)
//! cargo run --example demo --features saml -- --config examples/saml.toml   # a SAML IdP
//! ```
//!
//! Then open <http://127.0.0.1:3000/> and log in as `alice` or `bob` (or type any user). Local
//! users live in the SQLite file `jit-demo.db` of the current directory: after a restart the
//! same person logs in to the same local user, with email, name and groups refreshed from the
//! IdP. Set `RUST_LOG=debug` for more logs.
//!
//! Reading order: `run` (wiring: config, store, IdP, layer), `app` (routes and the ONE
//! `.layer(...)`), then the handlers, which simply take a `CurrentUser` extractor.

use std::error::Error;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::process::ExitCode;

use axum::Router;
use axum::extract::State;
use axum::response::{Html, Json};
use axum::routing::get;
use jit_provision::dev_idp::{DevClient, DevIdp, DevUser};
use jit_provision::store::SqliteStore;
use jit_provision::{
    AuthMethod, CurrentUser, IdpAccessToken, IdpTokenRejection, JitConfig, JitLayer, MappingConfig,
    ProviderConfig, Unauthenticated, escape_html,
};
use serde::Deserialize;
use tokio::net::TcpListener;

type BoxError = Box<dyn Error + Send + Sync>;

const DEFAULT_LISTEN: &str = "127.0.0.1:3000";
const DEFAULT_DATABASE: &str = "sqlite://jit-demo.db";
const DEV_IDP_LISTEN: &str = "127.0.0.1:3001";
const NAV: &str = "<p><a href=\"/\">Home</a> · <a href=\"/profile\">Profile</a> · \
                   <a href=\"/me\">/me as JSON</a></p>";
const USAGE: &str = "usage: cargo run --example demo -- [--listen ADDR] [--config FILE.toml]

  --listen ADDR       address to serve on (default 127.0.0.1:3000)
  --config FILE.toml  a jit_provision::JitConfig plus a [demo] table, see examples/demo.toml
                      (OpenID Connect) and examples/saml.toml (SAML, with --features saml);
                      without it the demo starts a development IdP and needs no set-up";

/// The `[demo]` table of a config file: settings of this app, not of the layer. Every other
/// key of the file belongs to the [`JitConfig`].
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DemoSettings {
    /// Address to serve on (`--listen` wins). Default `127.0.0.1:3000`.
    pub listen: Option<String>,
    /// The SQLite database: `sqlite://file.db` or a plain path. Default `sqlite://jit-demo.db`.
    pub database_url: Option<String>,
    /// Also start the built-in development IdP as provider `dev`. Default `false`.
    pub dev_idp: bool,
}

/// Splits a config file into the layer's [`JitConfig`] and the demo's `[demo]` table.
pub fn parse_config(text: &str) -> Result<(JitConfig, DemoSettings), toml::de::Error> {
    let mut table: toml::Table = toml::from_str(text)?;
    let demo = match table.remove("demo") {
        Some(demo) => demo.try_into()?,
        None => DemoSettings::default(),
    };
    Ok((toml::Value::Table(table).try_into()?, demo))
}

#[tokio::main]
async fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "warn,jit_provision=info,demo=info".into());
    tracing_subscriber::fmt().with_env_filter(filter).init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("demo: {}", with_sources(&*err));
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), BoxError> {
    // 1. Arguments, and the configuration: a file, or zero-config with the dev IdP.
    let mut listen = None;
    let mut config_file = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = Some(args.next().ok_or("--listen needs an address")?),
            "--config" => config_file = Some(args.next().ok_or("--config needs a file")?),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("unknown argument `{other}`\n\n{USAGE}").into()),
        }
    }
    let (file_config, settings) = match &config_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
            let (config, settings) = parse_config(&text).map_err(|e| format!("{path}: {e}"))?;
            (Some(config), settings)
        }
        None => (
            None,
            DemoSettings {
                dev_idp: true,
                ..DemoSettings::default()
            },
        ),
    };

    // 2. Listen first, so the public URL (hence the redirect URI) names the real port.
    let listen = listen
        .or(settings.listen)
        .unwrap_or_else(|| DEFAULT_LISTEN.into());
    let listener = TcpListener::bind(&listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e} (try --listen 127.0.0.1:0)"))?;
    let local = listener.local_addr()?;
    let zero_config = file_config.is_none();
    let mut config = file_config.unwrap_or_else(|| JitConfig::new(format!("http://{local}")));

    // 3. The user store: a SQLite file, created and migrated on first run; or PostgreSQL
    //    (`database_url = "postgres://..."`, built with `--features postgres`) for several
    //    demo instances on one database.
    let database = settings
        .database_url
        .unwrap_or_else(|| DEFAULT_DATABASE.into());
    let store = DemoStore::open(&database)
        .await
        .map_err(|e| format!("opening {database}: {e}"))?;

    // 4. The development IdP, registered as provider `dev`, with our redirect URI.
    let dev_idp = if settings.dev_idp {
        if config.providers.contains_key("dev") {
            return Err("[demo] dev_idp = true adds provider `dev`: remove [providers.dev]".into());
        }
        let public_url = config.public_url.trim_end_matches('/');
        let idp = start_dev_idp(&format!("{public_url}{}", config.path_prefix)).await?;
        config
            .providers
            .insert("dev".into(), dev_provider(idp.issuer()));
        Some(idp)
    } else {
        None
    };

    // 5. The layer. A config file says everything itself; zero-config mode serves plain http
    //    on loopback and sends anonymous browsers on HTML pages to the dev IdP's login.
    let mut builder = store.install(JitLayer::builder().config(config.clone()));
    if zero_config {
        builder = builder
            .insecure_cookies_for_localhost()
            .unauthenticated(Unauthenticated::RedirectToLogin("dev".into()));
    }
    let jit = builder.build()?;

    let state = AppState {
        prefix: config.path_prefix.clone(),
        providers: config
            .providers
            .iter()
            .map(|(id, p)| (id.clone(), p.display_name.clone().unwrap_or(id.clone())))
            .collect(),
        store: store.clone(),
        jit: jit.clone(),
    };
    let users = store.user_count().await?;
    print_banner(&config, &jit, local, &database, users, dev_idp.as_ref());

    axum::serve(listener, app(state, jit))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    if let Some(idp) = dev_idp {
        idp.shutdown();
    }
    store.close().await;
    Ok(())
}

/// The demo's store: SQLite by default, PostgreSQL for several instances.
#[derive(Clone)]
enum DemoStore {
    Sqlite(SqliteStore),
    #[cfg(feature = "postgres")]
    Postgres(jit_provision::store::PostgresStore),
}

impl DemoStore {
    async fn open(url: &str) -> Result<Self, String> {
        if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            #[cfg(feature = "postgres")]
            return jit_provision::store::PostgresStore::connect(url)
                .await
                .map(Self::Postgres)
                .map_err(|e| with_sources(&e));
            #[cfg(not(feature = "postgres"))]
            return Err("PostgreSQL needs the `postgres` feature: \
                        cargo run --example demo --features postgres -- --config FILE"
                .into());
        }
        let url = if url.starts_with("sqlite:") {
            url.to_owned()
        } else {
            format!("sqlite://{url}")
        };
        SqliteStore::connect(&url)
            .await
            .map(Self::Sqlite)
            .map_err(|e| with_sources(&e))
    }

    /// Gives the layer its store, which also keeps the sessions (table `jit_sessions`: a
    /// logout holds across restarts); PostgreSQL also shares one-time values and cache
    /// invalidations between instances.
    fn install(&self, builder: jit_provision::JitLayerBuilder) -> jit_provision::JitLayerBuilder {
        match self {
            Self::Sqlite(s) => builder.store(s.clone()).replay_guard(s.clone()),
            #[cfg(feature = "postgres")]
            Self::Postgres(p) => builder
                .store(p.clone())
                .replay_guard(p.clone())
                .invalidation_bus(p.clone()),
        }
    }

    async fn user_count(&self) -> Result<i64, jit_provision::store::StoreError> {
        match self {
            Self::Sqlite(s) => s.user_count().await,
            #[cfg(feature = "postgres")]
            Self::Postgres(p) => p.user_count().await,
        }
    }

    async fn close(&self) {
        match self {
            // Checkpoints SQLite's write-ahead log into the file.
            Self::Sqlite(s) => s.pool().close().await,
            #[cfg(feature = "postgres")]
            Self::Postgres(p) => p.pool().close().await,
        }
    }
}

fn print_banner(
    config: &JitConfig,
    jit: &JitLayer,
    local: SocketAddr,
    db: &str,
    users: i64,
    idp: Option<&DevIdp>,
) {
    let public_url = config.public_url.trim_end_matches('/');
    if url::Url::parse(public_url)
        .ok()
        .and_then(|u| u.port_or_known_default())
        != Some(local.port())
    {
        tracing::warn!(
            "public_url {public_url} names another port than {local}: fine behind a proxy"
        );
    }
    println!("\njit-provision demo: open {public_url}/");
    println!("  listening on  {local}");
    println!(
        "  pages         / (home), /profile (HTML), /me (JSON; 401 when logged out: an HTML page for browsers)"
    );
    println!("  user store    {db} ({users} users)");
    for line in provider_lines(config, jit) {
        println!("{line}");
    }
    if let Some(idp) = idp {
        println!(
            "  dev IdP       {} (for development only: logs in whoever you say)",
            idp.issuer()
        );
        println!(
            "                presets alice (staff, admins; role admin) and bob (staff; role editor), or type a user"
        );
        println!(
            "                log a user out at the IdP (back-channel): curl -d sub=1001 {}/admin/logout",
            idp.issuer()
        );
    }
    println!("Press Ctrl-C to stop.\n");
}

/// The banner's lines for each provider: what to register at its IdP.
pub fn provider_lines(config: &JitConfig, jit: &JitLayer) -> Vec<String> {
    let mut lines = Vec::new();
    for (id, provider) in &config.providers {
        #[cfg(feature = "saml")]
        if let Some(sp) = jit.saml_provider(id) {
            lines.push(format!(
                "  provider      {id}: SAML 2.0; register at the IdP:"
            ));
            lines.push(format!(
                "                  ACS URL (HTTP-POST)  {}",
                sp.acs_url()
            ));
            lines.push(format!(
                "                  SP entity ID         {}",
                sp.sp_entity_id()
            ));
            lines.push(format!(
                "                  SP metadata          {}",
                sp.metadata_url()
            ));
            continue;
        }
        lines.push(format!(
            "  provider      {id}: issuer {}",
            provider.issuer()
        ));
        if let Some(redirect_uri) = jit.redirect_uri(id) {
            lines.push(format!(
                "                  redirect URI         {redirect_uri}"
            ));
        }
        // The URIs to register at the IdP for the logouts it initiates or takes part in.
        if let Some(uri) = jit.backchannel_logout_uri(id) {
            lines.push(format!("                  back-channel logout URI {uri}"));
        }
        if let Some(uri) = jit.frontchannel_logout_uri(id) {
            lines.push(format!("                  front-channel logout URI {uri}"));
        }
        if let Some(uri) = jit.post_logout_redirect_uri(id) {
            lines.push(format!("                  post-logout redirect URI {uri}"));
        }
    }
    lines
}

/// The users offered on the development IdP's login page (any other can be typed there),
/// with Keycloak-style nested roles: realm roles in `realm_access.roles`, roles of the
/// client `demo` in `resource_access.demo.roles`.
fn dev_users() -> [DevUser; 2] {
    let admins: &[&str] = &["staff", "admins"];
    let keycloak_roles = |mut user: DevUser, realm: &[&str], client: &[&str]| {
        let claims = &mut user.claims;
        claims.insert("realm_access".into(), serde_json::json!({ "roles": realm }));
        claims.insert(
            "resource_access".into(),
            serde_json::json!({ "demo": { "roles": client } }),
        );
        user
    };
    [
        keycloak_roles(
            DevUser::new("1001", "alice", "alice@example.com", "Alice", admins),
            &["realm-admin", "offline_access"],
            &["editor"],
        ),
        keycloak_roles(
            DevUser::new("1002", "bob", "bob@example.com", "Bob", &["staff"]),
            &["offline_access"],
            &["editor"],
        ),
    ]
}

/// Starts the development IdP on 127.0.0.1:3001, or on any free port when that one is taken,
/// with the demo's client: its redirect URI and its logout URIs under `auth_base`
/// (`{public_url}{path_prefix}`).
async fn start_dev_idp(auth_base: &str) -> std::io::Result<DevIdp> {
    let idp = || {
        let client = DevClient::new("demo", "demo-secret")
            .redirect_uri(format!("{auth_base}/dev/callback"))
            .post_logout_redirect_uri(format!("{auth_base}/logout/done"))
            .backchannel_logout_uri(format!("{auth_base}/dev/backchannel-logout"));
        let [alice, bob] = dev_users();
        DevIdp::builder().client(client).user(alice).user(bob)
    };
    match idp().start(DEV_IDP_LISTEN).await {
        Err(e) if e.kind() == ErrorKind::AddrInUse => {
            tracing::warn!("{DEV_IDP_LISTEN} is busy: the development IdP takes a free port");
            idp().start("127.0.0.1:0").await
        }
        started => started,
    }
}

/// How the demo trusts the development IdP: its client, groups taken from `groups`, who is
/// admitted, and roles from Keycloak-style nested claims.
fn dev_provider(issuer: &str) -> ProviderConfig {
    // A realistic policy: groups synced through an allow-list (a typed `finance` group is
    // dropped), a constant attribute marking where users came from, and the mode and
    // linking defaults (create and update; never link to an existing account).
    let mut groups = jit_provision::config::GroupsConfig::from_claim("groups");
    groups.allow = vec!["staff".into(), "admins".into(), "eng-*".into()];
    let mapping = {
        let mut built = MappingConfig::default();
        built.groups = Some(groups);
        built.constants = [("source".to_owned(), "dev-idp".to_owned())].into();
        built
    };
    // Only verified `example.com` and `example.org` addresses of members of `staff` or an
    // `eng-*` group are provisioned: type a user of another domain, or in `finance` only, on
    // the IdP's page to see a 403 `not_admitted` naming the rule. (examples/load.rs logs in
    // members of `staff`, `eng-a` and `eng-b` at `example.com`: all admitted.)
    let admission: jit_provision::config::AdmissionConfig = toml::from_str(
        r#"
        email_domains = ["example.com", "example.org"]
        require_groups = ["staff", "eng-*"]
        "#,
    )
    .expect("the demo's admission rules parse");
    // Roles from the realm and client roles, first match wins, `viewer` otherwise: alice
    // (realm-admin) is `admin`, bob (client role editor) is `editor`.
    let roles: jit_provision::config::RolesConfig = toml::from_str(
        r#"
        default = "viewer"
        [[rules]]
        role = "admin"
        when = { claim = "realm_access.roles", one_of = ["realm-admin"] }
        [[rules]]
        role = "editor"
        when = { claim = 'resource_access."demo".roles', one_of = ["editor"] }
        "#,
    )
    .expect("the demo's role rules parse");
    // Logout both ways: the app's logout ends the IdP session too (RP-initiated), and the
    // IdP's logout of a user ends its sessions here (back-channel).
    let mut provider = ProviderConfig::new(issuer, "demo")
        .client_secret("demo-secret")
        .display_name("the development IdP")
        .mapping(mapping)
        .admission(admission)
        .roles(roles);
    provider.backchannel_logout = true;
    provider.rp_initiated_logout = true;
    // Access and refresh tokens kept (sealed) for `IdpAccessToken` on the profile page.
    provider.store_tokens = true;
    provider
}

/// What the pages need besides the user: the login links, the store for a user count, and
/// the layer for the user's sessions.
#[derive(Clone)]
struct AppState {
    prefix: String,
    /// `(id, name)` of every provider.
    providers: Vec<(String, String)>,
    store: DemoStore,
    jit: JitLayer,
}

fn app(state: AppState, jit: JitLayer) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/profile", get(profile))
        .route("/me", get(me))
        .with_state(state)
        // The layer's admin pages (users of a provider, dry runs, the "test your mapping"
        // page at /admin/jit-test), for members of the local `admins` group only.
        .merge(jit.admin_router(|user| user.groups.contains("admins")))
        // The whole integration. The layer answers `/auth/{provider}/login`,
        // `/auth/{provider}/callback`, `POST /auth/logout` and `POST /auth/logout/everywhere`
        // itself, and attaches the logged-in user to every other request for the
        // `CurrentUser` extractor.
        .layer(jit)
}

/// Serves everyone: `Option<CurrentUser>` is `None` when nobody is logged in.
async fn home(State(app): State<AppState>, user: Option<CurrentUser>) -> Html<String> {
    let body = match user {
        Some(user) => format!(
            "<p>Logged in as <strong>{}</strong> through <code>{}</code>.</p>{NAV}{}",
            escape_html(user.display_name.as_deref().unwrap_or(&user.username)),
            escape_html(&user.auth.provider),
            logout_button(&app.prefix),
        ),
        None => {
            let links: String = app
                .providers
                .iter()
                .map(|(id, name)| {
                    let href = format!("{}/{id}/login?return_to=/profile", app.prefix);
                    let (href, name) = (escape_html(&href), escape_html(name));
                    format!("<li><a href=\"{href}\">Log in</a> with {name}</li>")
                })
                .collect();
            format!("<p>Nobody is logged in.</p><ul>{links}</ul>")
        }
    };
    let users = match app.store.user_count().await {
        Ok(n) => format!("{n} local user(s) in the store."),
        Err(e) => format!("The store failed: {e}."),
    };
    page(
        "jit-provision demo",
        &format!("{body}<p><small>{users}</small></p>"),
    )
}

/// Needs a login: anonymous browsers are redirected to it (zero-config mode), others get 401.
async fn profile(
    State(app): State<AppState>,
    user: CurrentUser,
    idp_token: Result<IdpAccessToken, IdpTokenRejection>,
) -> Html<String> {
    let (u, auth) = (&user.user, &user.auth);
    let local = [
        ("Local user id", u.id.to_string()),
        ("Username", u.username.clone()),
        ("Email", u.email.clone().unwrap_or_default()),
        ("Display name", u.display_name.clone().unwrap_or_default()),
        ("Groups", join(u.groups.iter().cloned())),
        ("Roles", join(u.roles.iter().cloned())),
        (
            "Attributes",
            join(u.attributes.iter().map(|(k, v)| format!("{k} = {v}"))),
        ),
        ("Created", time(u.created_at)),
        ("Updated", time(u.updated_at)),
    ];
    let method = match &auth.method {
        AuthMethod::Session => "session cookie (interactive login)",
        AuthMethod::Bearer { .. } => "bearer token",
        _ => "other",
    };
    let origin = [
        ("Provider", auth.provider.clone()),
        ("Subject", auth.subject.clone()),
        ("Credential", method.to_owned()),
        ("Logged in", time(auth.issued_at)),
        ("Expires", time(auth.expires_at)),
        // `IdpAccessToken`: what a handler calling an API of the IdP on the user's behalf
        // takes (refreshed once it is about to expire). Never shown: it is a credential.
        (
            "IdP access token",
            match &idp_token {
                Ok(token) => match token.expires_at() {
                    Some(at) => format!("held, valid until {}", time(at)),
                    None => "held".to_owned(),
                },
                Err(rejection) => format!("none ({})", rejection.code()),
            },
        ),
    ];
    let admin = if u.groups.contains("admins") {
        "<p><a href=\"/admin/jit-test\">Test your mapping</a> (the layer's admin page, for \
         the <code>admins</code> group)</p>"
    } else {
        ""
    };
    let body = format!(
        "<h2>Local user</h2>{}<h2>Where it came from</h2>{}<h2>Your sessions</h2>{}{admin}{NAV}{}",
        table(&local),
        table(&origin),
        sessions(&app, &user).await,
        logout_button(&app.prefix),
    );
    page("Profile", &body)
}

/// The user's live sessions (every browser logged in as them, from the session store), and a
/// button ending them all.
async fn sessions(app: &AppState, user: &CurrentUser) -> String {
    let listed = match app.jit.sessions_of(&user.auth.domain, user.id).await {
        Ok(listed) => listed,
        Err(e) => {
            return format!(
                "<p>The session store failed: {}.</p>",
                escape_html(&e.to_string())
            );
        }
    };
    let items: String = listed
        .iter()
        .map(|s| {
            format!(
                "<li>started {}, last seen {}, through <code>{}</code></li>",
                time(s.created_at),
                time(s.last_seen),
                escape_html(&s.provider)
            )
        })
        .collect();
    format!(
        "<ul id=\"sessions\">{items}</ul>\
         <form method=\"post\" action=\"{}/logout/everywhere\">\
         <button type=\"submit\">Sign out everywhere</button></form>",
        escape_html(&app.prefix)
    )
}

/// JSON API: `401 {"error":"login_required",...}` when nobody is logged in.
async fn me(user: CurrentUser) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "user": &*user.user,
        "auth": &*user.auth, // provider, subject, issued_at, expires_at, method
    }))
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>body{{font-family:sans-serif;max-width:44rem;margin:2rem auto}}\
         th{{text-align:left;padding-right:1rem}}</style></head>\
         <body><h1>{title}</h1>{body}</body></html>"
    ))
}

/// A two-column table; every value is escaped here, as it comes from the IdP.
fn table(rows: &[(&str, String)]) -> String {
    let rows: String = rows
        .iter()
        .map(|(name, value)| {
            let value = if value.is_empty() { "—" } else { value };
            format!("<tr><th>{name}</th><td>{}</td></tr>", escape_html(value))
        })
        .collect();
    format!("<table>{rows}</table>")
}

/// Logout is a `POST`, so that a link or an image elsewhere cannot log you out.
fn logout_button(prefix: &str) -> String {
    format!(
        "<form method=\"post\" action=\"{}/logout\"><button type=\"submit\">Log out</button></form>",
        escape_html(prefix)
    )
}

fn join(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

fn time(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| unix.to_string())
}

/// An error with its causes (`StoreError` keeps sqlx's message in its source).
fn with_sources(err: &dyn Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}
