//! Filters and sort against a naive reference: fetch everything, filter, sort, slice.
//! Plus what upstreams are asked for: pushed-down filters and nothing else.

use proptest::prelude::*;
use serde_json::Value;
use users_gateway::sandbox::SandboxOptions;

use crate::helpers::{compare_nulls_last, expected_users, folded, ids, sort_reference, spawn_app, spawn_with, TestApp};

/// One generated query: raw text for the gateway and what the reference needs.
#[derive(Debug, Clone)]
struct Query {
    provider: Option<&'static str>,
    role: Option<String>,
    email: Option<String>,
    employee_id: Option<String>,
    user_id: Option<String>,
    sort: Vec<(&'static str, bool)>,
    page: u64,
    per_page: u64,
}

impl Query {
    fn to_url(&self) -> String {
        let mut url = form_urlencoded::Serializer::new(String::new());
        url.append_pair("page", &self.page.to_string());
        url.append_pair("per_page", &self.per_page.to_string());
        for (name, value) in [
            ("provider", self.provider.map(str::to_owned)),
            ("role", self.role.clone()),
            ("email", self.email.clone()),
            ("employee_id", self.employee_id.clone()),
            ("user_id", self.user_id.clone()),
        ] {
            if let Some(value) = value {
                url.append_pair(name, &value);
            }
        }
        if !self.sort.is_empty() {
            let keys: Vec<String> = self
                .sort
                .iter()
                .map(|(field, desc)| format!("{}{field}", if *desc { "-" } else { "" }))
                .collect();
            url.append_pair("sort", &keys.join(","));
        }
        format!("/users?{}", url.finish())
    }
}

/// SPEC §3 read naively, over SPEC §4 users.
fn reference(users: &[Value], query: &Query) -> Vec<String> {
    let mut matching: Vec<&Value> = users
        .iter()
        .filter(|u| query.provider.is_none_or(|p| u["provider"] == p))
        .filter(|u| {
            query
                .role
                .as_ref()
                .is_none_or(|r| folded(&u["role"]) == Some(r.to_lowercase()))
        })
        .filter(|u| {
            query.email.as_ref().is_none_or(|e| {
                let needle = e.to_lowercase();
                folded(&u["email"]).is_some_and(|v| v.contains(&needle))
                    || folded(&u["username"]).is_some_and(|v| v.contains(&needle))
            })
        })
        .filter(|u| {
            query
                .employee_id
                .as_ref()
                .is_none_or(|e| folded(&u["employee_id"]).is_some_and(|v| v.contains(&e.to_lowercase())))
        })
        .filter(|u| {
            query
                .user_id
                .as_ref()
                .is_none_or(|id| folded(&u["provider_id"]) == Some(id.to_lowercase()))
        })
        .collect();
    sort_reference(&mut matching, &query.sort);
    matching.iter().map(|u| u["id"].as_str().unwrap().to_owned()).collect()
}

const SORT_FIELDS: [&str; 6] = [
    "email",
    "first_name",
    "last_name",
    "display_name",
    "created_at",
    "last_active_at",
];

fn query_strategy() -> impl Strategy<Value = (Query, prop::sample::Index)> {
    let text = |choices: &'static [&'static str]| {
        prop::option::weighted(0.35, prop::sample::select(choices).prop_map(str::to_owned))
    };
    (
        prop::option::weighted(0.3, prop::sample::select(&["thoughtindustries", "tapintosafety"][..])),
        text(&[
            "admin",
            "ADMIN",
            "learner",
            "Supervisor",
            "administrator",
            "instructor",
            "nobody",
        ]),
        text(&["acme", "SITE-WORKS", "zoe", "obrien", "12", "sso|", "nomatch"]),
        text(&["EMP-1", "emp-100", "0", "nomatch"]),
        prop::option::weighted(0.15, any::<bool>()),
        prop::collection::vec((prop::sample::select(&SORT_FIELDS[..]), any::<bool>()), 0..3),
        1u64..=6,
        prop_oneof![Just(1u64), Just(7), Just(25), Just(100), 1u64..=100],
        any::<prop::sample::Index>(),
    )
        .prop_map(
            |(provider, role, email, employee_id, pick_user, mut sort, page, per_page, which)| {
                sort.dedup_by_key(|(field, _)| *field);
                let query = Query {
                    provider,
                    role,
                    email,
                    employee_id,
                    // Some(true): an existing user's id (picked below); Some(false): a random UUID.
                    user_id: pick_user.map(|existing| {
                        if existing {
                            "existing".to_owned()
                        } else {
                            "9d2c5a6e-0c1b-4b53-9a43-2f1d7e6b1a55".to_owned()
                        }
                    }),
                    sort,
                    page,
                    per_page,
                };
                (query, which)
            },
        )
}

async fn check_queries(app: &TestApp, queries: Vec<(Query, prop::sample::Index)>) -> Result<(), TestCaseError> {
    let users = expected_users(&app.sandbox);
    for (mut query, which) in queries {
        if query.user_id.as_deref() == Some("existing") {
            query.user_id = if users.is_empty() {
                None
            } else {
                Some(
                    users[which.index(users.len())]["provider_id"]
                        .as_str()
                        .unwrap()
                        .to_uppercase(),
                )
            };
        }
        let url = query.to_url();
        let matching = reference(&users, &query);
        let total = matching.len() as u64;
        let start = ((query.page - 1) * query.per_page).min(total) as usize;
        let end = (query.page * query.per_page).min(total) as usize;
        let reply = app.get(&url).await;
        prop_assert_eq!(reply.status, 200, "{} → {}", url, reply.text);
        let body = reply.json();
        prop_assert_eq!(ids(&body), matching[start..end].to_vec(), "{}", url);
        prop_assert_eq!(&body["meta"]["total"], &Value::from(total), "{}", url);
        prop_assert_eq!(
            &body["meta"]["total_pages"],
            &Value::from(total.div_ceil(query.per_page)),
            "{}",
            url
        );
        prop_assert_eq!(
            &body["meta"]["has_more"],
            &Value::from(query.page < total.div_ceil(query.per_page)),
            "{}",
            url
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 20, failure_persistence: None, ..ProptestConfig::default() })]

    /// Random datasets, TI page sizes and pushdown settings; several random queries each.
    #[test]
    fn every_query_matches_the_naive_reference(
        seed in 0u64..1000,
        ti_users in 0usize..220,
        tis_users in 0usize..170,
        ti_page_size in 1usize..45,
        ti_role_pushdown in any::<bool>(),
        queries in prop::collection::vec(query_strategy(), 6),
    ) {
        let options = SandboxOptions { seed, ti_users, tis_users, ti_page_size, ..SandboxOptions::default() };
        let pushdown = if ti_role_pushdown { "true" } else { "false" };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let app = spawn_with(options, &[("GATEWAY_TI_ROLE_PUSHDOWN", pushdown)]).await;
            check_queries(&app, queries).await
        })?;
    }
}

fn params(requests: &[String]) -> Vec<String> {
    requests
        .iter()
        .map(|r| r.split_once('?').map(|(_, q)| q.to_owned()).unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn pushed_down_filters_reach_upstreams_and_nothing_else_does() {
    let app = spawn_app().await;
    app.get("/users?role=ADMIN").await;
    let (ti, tis) = app.upstream_requests();
    assert!(
        params(&ti).iter().all(|q| q.starts_with("role=admin&page=")),
        "TI gets role, lowercased: {ti:?}"
    );
    assert!(
        params(&tis).iter().all(|q| q.starts_with("page=")),
        "role is not TIS's to apply: {tis:?}"
    );
    assert_eq!(
        tis.len(),
        15,
        "TIS is read in full (730 users, 50 a page) and filtered by the gateway"
    );

    app.clear_upstream_requests();
    app.get("/users?email=Acme&sort=email").await;
    let (ti, tis) = app.upstream_requests();
    assert!(params(&ti).iter().all(|q| q.starts_with("page=")), "{ti:?}");
    assert!(
        params(&tis).iter().all(|q| q.starts_with("email=Acme&page=")),
        "{tis:?}"
    );

    app.clear_upstream_requests();
    let body = app.get("/users?employee_id=EMP-100").await.json();
    let (ti, tis) = app.upstream_requests();
    assert!(ti.is_empty(), "TI users have no employee id: TI is skipped");
    assert_eq!(body["meta"]["sources"][0]["status"], "skipped");
    assert!(body["meta"]["sources"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("employee_id"));
    assert!(
        params(&tis).iter().all(|q| q.starts_with("orgId=EMP-100&page=")),
        "{tis:?}"
    );

    app.clear_upstream_requests();
    let tis_id = app.sandbox.tis.records[321]["id"].as_str().unwrap().to_owned();
    let body = app
        .get(&format!("/users?user_id={}", tis_id.to_uppercase()))
        .await
        .json();
    let (_, tis) = app.upstream_requests();
    assert_eq!(params(&tis), [format!("userId={tis_id}&page=1")], "a GUID, normalized");
    assert_eq!(ids(&body), [format!("tapintosafety:{tis_id}")]);
}

/// TI users whose role key is `admin`, counted from the sandbox's own records.
fn ti_admins(app: &TestApp) -> usize {
    app.sandbox
        .ti
        .records
        .iter()
        .filter(|r| r["roleKey"] == "admin")
        .count()
}

#[tokio::test]
async fn role_pushdown_can_be_turned_off() {
    let app = spawn_with(SandboxOptions::default(), &[("GATEWAY_TI_ROLE_PUSHDOWN", "false")]).await;
    let body = app.get("/users?role=admin&provider=thoughtindustries").await.json();
    let (ti, _) = app.upstream_requests();
    assert!(params(&ti).iter().all(|q| q.starts_with("page=")), "{ti:?}");
    assert_eq!(ti.len(), 32, "all of TI is read and filtered");
    let admins = ti_admins(&app);
    assert_eq!(body["meta"]["total"], admins as u64);
}

#[tokio::test]
async fn a_direct_read_fetches_only_the_window() {
    let app = spawn_app().await;
    // TI admins fill two pages of 40 (between 41 and 80 of them); users 40..50 are on page 2 only.
    let admins = ti_admins(&app);
    let body = app
        .get("/users?role=admin&provider=thoughtindustries&page=5&per_page=10")
        .await
        .json();
    assert_eq!(body["meta"]["total"], admins as u64);
    let (ti, _) = app.upstream_requests();
    assert_eq!(params(&ti), ["role=admin&page=1", "role=admin&page=2"]);
}

#[tokio::test]
async fn sorted_walk_reuses_the_full_read() {
    let app = spawn_app().await;
    let expected = {
        let mut users = expected_users(&app.sandbox);
        users.sort_by(|a, b| {
            compare_nulls_last(folded(&a["last_name"]), folded(&b["last_name"]), true)
                .then(a["id"].as_str().cmp(&b["id"].as_str()))
        });
        users
            .iter()
            .map(|u| u["id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let mut walked = Vec::new();
    for page in 1..=20 {
        walked.extend(ids(&app
            .get(&format!("/users?sort=-last_name&per_page=100&page={page}"))
            .await
            .json()));
    }
    assert_eq!(walked, expected);
    let (ti, tis) = app.upstream_requests();
    assert_eq!(
        (ti.len(), tis.len()),
        (32, 15),
        "each upstream page once for the whole walk"
    );
    app.clear_upstream_requests();
    let one = app.sandbox.ti.records[77]["id"].as_str().unwrap();
    assert_eq!(app.get(&format!("/users/thoughtindustries:{one}")).await.status, 200);
    let (ti, _) = app.upstream_requests();
    assert!(ti.is_empty(), "/users/{{id}} reuses the cached full read");
}

/// A tenant whose upstream JSON alone is larger than the page cache (SPEC §7): kept compact,
/// its full read fits, so a sorted and filtered walk reads each upstream page once, and every
/// page after the first is answered from the views of that read.
#[tokio::test]
async fn a_tenant_larger_than_its_json_fits_walks_sorted_and_filtered_on_one_read() {
    let options = SandboxOptions {
        ti_record_bytes: Some(4000),
        ..SandboxOptions::default()
    };
    // Pages get 3/4 of the bound: 4.5 MiB, less than TI's 1250 records of 4 KB alone.
    let app = spawn_with(options, &[("GATEWAY_CACHE_MAX_BYTES", "6291456")]).await;
    let users = expected_users(&app.sandbox);
    let ti_json: usize = app.sandbox.ti.records.iter().map(|r| r.to_string().len()).sum();
    assert!(
        ti_json > 4_718_592,
        "TI's JSON ({ti_json} bytes) is larger than the page cache"
    );

    for query in [
        Query {
            provider: None,
            role: None,
            email: None,
            employee_id: None,
            user_id: None,
            sort: vec![("last_name", false)],
            page: 1,
            per_page: 50,
        },
        Query {
            provider: None,
            role: None,
            email: Some("example".to_owned()),
            employee_id: None,
            user_id: None,
            sort: vec![("created_at", true), ("email", false)],
            page: 1,
            per_page: 50,
        },
    ] {
        let expected = reference(&users, &query);
        assert!(expected.len() > 500, "{} matching users", expected.len());
        app.clear_upstream_requests();
        let mut walked = Vec::new();
        for page in 1..=expected.len().div_ceil(50) as u64 {
            let url = Query { page, ..query.clone() }.to_url();
            let body = app.get(&url).await.json();
            assert_eq!(body["meta"]["total"], expected.len() as u64, "{url}");
            walked.extend(ids(&body));
            if page == 1 {
                app.clear_upstream_requests();
            }
        }
        assert_eq!(walked, expected, "{query:?}");
        let (ti, tis) = app.upstream_requests();
        assert!(
            ti.is_empty() && tis.is_empty(),
            "after the first page, no upstream call: {ti:?} {tis:?}"
        );
    }
}

/// A view answers only for the pages it was built from: once they are refetched and
/// contradict each other, a sorted page reports the source failed rather than serving the
/// order of the pages before.
#[tokio::test]
async fn a_view_does_not_outlive_the_pages_it_was_built_from() {
    use users_gateway::sandbox::{DataFault, Fault};

    let app = spawn_app().await;
    let sorted = "/users?sort=email&per_page=100";
    let first = app.get(&format!("{sorted}&page=2")).await.json();
    assert_eq!(first["meta"]["partial"], false);

    app.sandbox.ti.control.set_fault(Fault::Data(DataFault::RepeatIds));
    let refreshed = app
        .get_with(&format!("{sorted}&page=2"), &[("cache-control", "no-cache")])
        .await
        .json();
    for body in [refreshed, app.get(&format!("{sorted}&page=3")).await.json()] {
        assert_eq!(body["meta"]["partial"], true, "{body}");
        let ti = body["meta"]["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|source| source["source"] == "thoughtindustries")
            .unwrap()
            .clone();
        assert_eq!(
            (&ti["status"], &ti["error"]["code"]),
            (&"error".into(), &"bad_response".into()),
            "{ti}"
        );
        assert!(
            ids(&body).iter().all(|id| id.starts_with("tapintosafety:")),
            "no TI user from the pages before: {body}"
        );
    }
}
