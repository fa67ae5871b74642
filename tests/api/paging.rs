//! End to end, for arbitrary upstream sizes: walking every page through the real gateway
//! and sandbox returns each user exactly once, in order, with the right meta.

use proptest::prelude::*;
use users_gateway::sandbox::SandboxOptions;

use crate::helpers::{ids, spawn_with};

async fn walk(options: SandboxOptions, per_page: u64) -> Result<(), TestCaseError> {
    let app = spawn_with(options, &[]).await;
    let expected = app.expected_ids();
    let total = expected.len() as u64;
    let total_pages = total.div_ceil(per_page);
    let mut walked = Vec::new();
    for page in 1..=total_pages + 1 {
        let reply = app.get(&format!("/users?page={page}&per_page={per_page}")).await;
        prop_assert_eq!(reply.status, 200);
        let body = reply.json();
        prop_assert_eq!(&body["meta"]["total"], &serde_json::json!(total));
        prop_assert_eq!(&body["meta"]["total_pages"], &serde_json::json!(total_pages));
        prop_assert_eq!(&body["meta"]["has_more"], &serde_json::json!(page < total_pages));
        walked.extend(ids(&body));
    }
    prop_assert_eq!(walked, expected);
    // Each upstream page was fetched at most once over the whole walk.
    let (ti, tis) = app.upstream_requests();
    let mut unique = ti.clone();
    unique.sort();
    unique.dedup();
    prop_assert_eq!(unique.len(), ti.len());
    let mut unique = tis.clone();
    unique.sort();
    unique.dedup();
    prop_assert_eq!(unique.len(), tis.len());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn walking_every_page_at_any_size_returns_everyone_once(
        ti_users in prop_oneof![Just(0usize), 0usize..300],
        tis_users in prop_oneof![Just(0usize), Just(50), 0usize..160],
        ti_page_size in 1usize..60,
        per_page in 3u64..=100,
    ) {
        let options = SandboxOptions { ti_users, tis_users, ti_page_size, ..SandboxOptions::default() };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(walk(options, per_page))?;
    }
}
