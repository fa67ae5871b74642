// `fields`: each user carries `id` plus the chosen fields only, and the types say so:
// `fields("email", "last_name")` makes the users `Pick<FullUser, "id" | "email" | "last_name">`.
//
//   GATEWAY_URL=http://127.0.0.1:8080 node dist/examples/fields.js
import assert from "node:assert/strict";
import { createUsersClient, fields, UnknownFieldError, type UserWith } from "../src/index.js";
import { gatewayFromEnv, inSortOrder, run } from "./env.js";

const client = createUsersClient(gatewayFromEnv());

run("fields", async () => {
  const page = await client.listUsers({ role: "admin", sort: ["last_name"], fields: fields("email", "last_name"), per_page: 50 });
  const users: UserWith<"email" | "last_name">[] = page.data;
  assert.ok(users.length > 0, "some admins");
  for (const user of users) {
    assert.deepEqual(Object.keys(user).sort(), ["email", "id", "last_name"], `keys of ${user.id}`);
    // Typed: these are `string | null`, present on every user...
    const email: string | null = user.email;
    void email;
    // ...and what was not asked for is not there, for the compiler either:
    // @ts-expect-error role was not selected
    void user.role;
  }
  for (let i = 1; i < users.length; i++) {
    const [a, b] = [users[i - 1]!, users[i]!];
    assert.ok(inSortOrder({ id: a.id, key: a.last_name }, { id: b.id, key: b.last_name }), `${a.id} before ${b.id}`);
  }
  console.log(`fields: ${users.length} admins with only id, email, last_name, sorted by last_name; first: ${JSON.stringify(users[0])}`);

  // One user, fewer fields.
  const first = users[0]!;
  const one = await client.getUser(first.id, { fields: fields("display_name", "role") });
  assert.ok(one, `GET /users/${first.id}`);
  assert.deepEqual(Object.keys(one).sort(), ["display_name", "id", "role"]);
  assert.equal(one.id, first.id);
  assert.equal(one.role?.toLowerCase(), "admin");
  console.log(`fields: GET /users/{id}?fields=display_name,role -> ${JSON.stringify(one)}`);

  // No fields: every field, all present.
  const full = await client.getUser(first.id);
  assert.ok(full);
  assert.equal(Object.keys(full).length, 15, "without fields: id and the 14 other fields");
  assert.equal(full.email, first.email);

  // An unknown name: the helper refuses it before sending; the gateway answers 400 naming it.
  assert.throws(() => fields("email", "nmae" as "email"), UnknownFieldError);
  const { error, response } = await client.api.GET("/users", { params: { query: { fields: "email,nmae" } } });
  assert.equal(response.status, 400);
  assert.ok(error && JSON.stringify(error).includes("nmae"), `the 400 names the unknown field: ${JSON.stringify(error)}`);
  assert.equal(response.headers.get("content-type"), "application/problem+json");
  console.log(`fields: unknown field -> ${response.status} ${JSON.stringify(error)}`);
});
