// Field selection (`fields`) and sort keys, typed from the generated schema.
import type { components } from "./schema.js";

/** A user as the OpenAPI document describes it (`components.schemas.User`). */
export type User = components["schemas"]["User"];

/** The upstream record under `raw` (only with `include=raw`). */
export type RawRecord = NonNullable<User["raw"]>;

/** Every SPEC §4 field a caller can ask for with `fields` (`id` always comes, `raw` comes with `include=raw`). */
export type UserField = Exclude<keyof User, "id" | "raw">;

/**
 * A user with every field present (`null` where it has no value), as the gateway sends it
 * without `fields`. `Required` only drops the `?` the document puts on fields that `fields`
 * can leave out: a field that can be null stays `… | null`.
 */
export type FullUser = Required<Omit<User, "raw">> & { raw?: RawRecord };

/** A user answered with `fields=F`: `id` plus exactly those fields (each present, `null` where empty). */
export type UserWith<F extends UserField> = Pick<FullUser, "id" | F> & { raw?: RawRecord };

/** The field names, in SPEC §4 order. The type below fails to compile if the schema gains or loses one. */
export const USER_FIELDS = [
  "source",
  "provider",
  "provider_id",
  "email",
  "username",
  "first_name",
  "last_name",
  "display_name",
  "role",
  "employee_id",
  "active",
  "created_at",
  "updated_at",
  "last_active_at",
] as const satisfies readonly UserField[];

// Compile-time: USER_FIELDS lists every UserField (and, by `satisfies`, nothing else).
type MissingFromList = Exclude<UserField, (typeof USER_FIELDS)[number]>;
const everyFieldListed: [MissingFromList] extends [never] ? true : MissingFromList = true;
void everyFieldListed;

const KNOWN_FIELDS: ReadonlySet<string> = new Set<string>(USER_FIELDS);

/** Thrown by {@link fields} for a name the gateway would answer with a 400. */
export class UnknownFieldError extends Error {
  constructor(readonly field: string) {
    super(`unknown user field ${JSON.stringify(field)}; known: id, ${USER_FIELDS.join(", ")}`);
    this.name = "UnknownFieldError";
  }
}

/**
 * A typed field selection: `fields("email", "last_name")`. The tuple type carries the names,
 * so `listUsers({ fields: fields("email") })` returns `UserWith<"email">[]`. Names are also
 * checked at run time (for values that bypassed the types, e.g. from a config file); `id` may
 * be given and is dropped (it always comes).
 */
export function fields<const F extends readonly (UserField | "id")[]>(...names: F): readonly Exclude<F[number], "id">[] {
  const out: Exclude<F[number], "id">[] = [];
  for (const name of names) {
    if (name === "id") continue;
    if (!KNOWN_FIELDS.has(name)) throw new UnknownFieldError(name);
    if (!out.includes(name as Exclude<F[number], "id">)) out.push(name as Exclude<F[number], "id">);
  }
  return out;
}

/** The wire form of a field selection: `email,last_name`. */
export function serializeFields(names: readonly string[]): string {
  for (const name of names) if (name !== "id" && !KNOWN_FIELDS.has(name)) throw new UnknownFieldError(name);
  return names.join(",");
}

/** The fields `sort` accepts (SPEC §3). */
export type SortField = "email" | "first_name" | "last_name" | "display_name" | "created_at" | "last_active_at";
/** A sort key: a field, `-` for descending. */
export type SortKey = SortField | `-${SortField}`;

/** The wire form of a sort: `["-created_at", "email"]` → `-created_at,email`. */
export function serializeSort(keys: readonly SortKey[]): string {
  return keys.join(",");
}
