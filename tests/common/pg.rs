//! A fresh PostgreSQL database per test, on the server scripts/test starts
//! (`JIT_TEST_PG_URL`). Without it the PostgreSQL tests skip, unless `JIT_REQUIRE_PG=1`.

use sqlx::Connection;

/// The URL of a new, empty database, or `None` (test skipped) when no server is configured.
pub async fn fresh_database() -> Option<String> {
    let Ok(admin) = std::env::var("JIT_TEST_PG_URL") else {
        assert!(
            std::env::var("JIT_REQUIRE_PG").as_deref() != Ok("1"),
            "JIT_REQUIRE_PG=1 but JIT_TEST_PG_URL is not set: run ./scripts/test, which starts PostgreSQL"
        );
        eprintln!(
            "\n*** SKIPPED: no PostgreSQL (JIT_TEST_PG_URL unset); ./scripts/test starts one ***\n"
        );
        return None;
    };
    let name = format!("jit_test_{}", uuid_like());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .expect("connecting to the test PostgreSQL server");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("creating a test database");
    let mut url = url::Url::parse(&admin).unwrap();
    url.set_path(&name);
    Some(url.to_string())
}

fn uuid_like() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
