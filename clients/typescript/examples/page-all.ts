// Page through every user with the async iterator, and check the walk is exact:
// every id once, as many users as meta.total, and meta.total is the sources' totals added up.
//
//   GATEWAY_URL=http://127.0.0.1:8080 EXPECT_TOTAL=1980 node dist/examples/page-all.js
import assert from "node:assert/strict";
import { createUsersClient, fields } from "../src/index.js";
import { expectedNumber, gatewayFromEnv, inSortOrder, run } from "./env.js";

const client = createUsersClient(gatewayFromEnv());

run("page-all", async () => {
  // 1. Every user, 100 a page (the fewest requests).
  const seen = new Set<string>();
  let pages = 0;
  const walk = client.pages({}, { per_page: 100 });
  let next = await walk.next();
  while (!next.done) {
    pages += 1;
    for (const user of next.value.data) {
      assert.ok(!seen.has(user.id), `user ${user.id} came twice`);
      seen.add(user.id);
      assert.equal(user.id, `${user.source}:${user.provider_id}`, "id is {source}:{provider_id}");
    }
    next = await walk.next();
  }
  const meta = next.value;
  assert.ok(meta, "the walk ended on a last page");
  assert.equal(seen.size, meta.total, "users seen == meta.total");
  const bySources = meta.sources.reduce((sum, s) => sum + (s.total ?? 0), 0);
  assert.equal(meta.total, bySources, "meta.total == the sources' totals added up");
  const expected = expectedNumber("EXPECT_TOTAL");
  if (expected !== undefined) assert.equal(meta.total, expected, "EXPECT_TOTAL");
  console.log(`page-all: ${seen.size} users on ${pages} pages, unique, == meta.total (${meta.sources.map((s) => `${s.source} ${s.total}`).join(", ")})`);

  // 2. A sorted walk at an odd page size, with a field selection: still exact, and in order
  //    (last_name case-insensitively, nulls last, ties by id).
  const sorted: { id: string; last_name: string | null }[] = [];
  let total: number | undefined;
  const sortedWalk = client.pages({ provider: ["tapintosafety"], sort: ["last_name"], fields: fields("last_name") }, { per_page: 37 });
  for (let r = await sortedWalk.next(); ; r = await sortedWalk.next()) {
    if (r.done) {
      total = r.value?.total;
      break;
    }
    sorted.push(...r.value.data);
  }
  assert.equal(sorted.length, total, "sorted walk: users == meta.total");
  assert.equal(new Set(sorted.map((u) => u.id)).size, sorted.length, "sorted walk: unique ids");
  for (let i = 1; i < sorted.length; i++) {
    const a = sorted[i - 1]!;
    const b = sorted[i]!;
    assert.ok(inSortOrder({ id: a.id, key: a.last_name }, { id: b.id, key: b.last_name }), `sorted walk: ${a.id} (${a.last_name}) before ${b.id} (${b.last_name})`);
  }
  console.log(`page-all: tapintosafety sorted by last_name, 37 a page: ${sorted.length} users, unique, in order`);
});
