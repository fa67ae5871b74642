// A small typed client for users-gateway on openapi-fetch, over the types that
// `npm run generate` makes from openapi/openapi.json (src/schema.d.ts).
import createClient, { type Client } from "openapi-fetch";
import type { components, paths } from "./schema.js";
import { serializeFields, serializeSort, type FullUser, type SortKey, type UserField, type UserWith } from "./fields.js";
import { ExportCutError, readExportStream, type ExportMeta, type NdjsonOptions } from "./ndjson.js";

export * from "./fields.js";
export * from "./ndjson.js";
export type { paths, components, operations } from "./schema.js";

export type Meta = components["schemas"]["Meta"];
export type Links = components["schemas"]["Links"];
export type Problem = components["schemas"]["Problem"];
export type SourceStatus = components["schemas"]["SourceStatus"];
export type SourceErrorCode = components["schemas"]["SourceErrorCode"];

/** The query of `GET /users` as the document types it. */
type ListQuery = NonNullable<paths["/users"]["get"]["parameters"]["query"]>;

/** Filters shared by `GET /users` and `GET /users/export` (everything but paging, `sort` and `fields`). */
export type UserFilters = Omit<ListQuery, "page" | "per_page" | "sort" | "fields" | "include"> & {
  /** Sort keys, e.g. `["last_name", "-created_at"]` (or the wire form `"last_name,-created_at"`). */
  sort?: readonly SortKey[] | string;
  /** `"raw"`: each user also carries its upstream record under `raw`. */
  include?: "raw";
};

/** A field selection: which SPEC §4 fields each user carries besides `id` (see `fields()`). */
export interface FieldsOption<F extends UserField> {
  fields?: readonly F[];
}

export type ListOptions<F extends UserField> = UserFilters & FieldsOption<F> & { page?: number; per_page?: number };

/** One page of `GET /users`, its users typed by the field selection. */
export interface UserPage<U> {
  data: U[];
  meta: Meta;
  links: Links;
}

/** A non-2xx answer from the gateway, with its problem document (RFC 9457) when it sent one. */
export class GatewayError extends Error {
  constructor(
    readonly status: number,
    readonly problem: Problem | undefined,
    readonly url: string,
  ) {
    super(`${status} from ${url}: ${problem ? `${problem.title}: ${problem.detail}` : "no problem document"}`);
    this.name = "GatewayError";
  }
}

/** A page answered from only some sources (`meta.partial`), where the caller asked for all of them. */
export class PartialAnswerError extends Error {
  constructor(readonly meta: Meta) {
    const failed = meta.sources
      .filter((s) => s.status === "error")
      .map((s) => `${s.source} (${s.error?.code ?? "?"}: ${s.error?.message ?? "?"})`);
    super(`partial answer on page ${meta.page}: ${failed.join(", ")} failed`);
    this.name = "PartialAnswerError";
  }
  /** The sources that failed, with their error. */
  get failed(): SourceStatus[] {
    return this.meta.sources.filter((s) => s.status === "error");
  }
}

/** A walk whose pages disagree (the total changed: the upstream data changed while paging). */
export class InconsistentWalkError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InconsistentWalkError";
  }
}

export interface UsersClientOptions {
  /** The gateway, e.g. `http://127.0.0.1:8080` (no trailing `/users`). */
  baseUrl: string;
  /** A key from the gateway's GATEWAY_API_KEYS, sent as `Authorization: Bearer …`. */
  apiKey?: string;
  /** Another fetch (tests, proxies). */
  fetch?: (input: Request) => Promise<Response>;
}

export interface WalkOptions {
  /** Users per page (1..=100, default 100: the fewest requests). */
  per_page?: number;
  /** Yield pages with `meta.partial` instead of throwing {@link PartialAnswerError}. */
  allowPartial?: boolean;
}

function problemOf(error: unknown): Problem | undefined {
  if (typeof error === "object" && error !== null && "status" in error && "title" in error) return error as Problem;
  return undefined;
}

/** Wire form of the shared parameters. `fields` and the sort helper are serialized here (comma lists). */
function wireQuery(options: UserFilters & { fields?: readonly string[]; page?: number; per_page?: number }): ListQuery {
  const { sort, fields, ...rest } = options;
  const query: Record<string, unknown> = { ...rest };
  if (sort !== undefined) query.sort = typeof sort === "string" ? sort : serializeSort(sort);
  if (fields !== undefined) query.fields = serializeFields(fields);
  for (const key of Object.keys(query)) if (query[key] === undefined) delete query[key];
  return query as ListQuery;
}

export function createUsersClient(options: UsersClientOptions) {
  const api: Client<paths> = createClient<paths>({
    baseUrl: options.baseUrl.replace(/\/+$/, ""),
    headers: options.apiKey ? { Authorization: `Bearer ${options.apiKey}` } : {},
    // The document declares comma lists (`provider`) as style form, explode false:
    // openapi-fetch's default would send `provider=a&provider=b`.
    querySerializer: { array: { style: "form", explode: false } },
    ...(options.fetch ? { fetch: options.fetch } : {}),
  });

  /** One page of `GET /users`. */
  async function listUsers<F extends UserField = UserField>(query: ListOptions<F> = {}): Promise<UserPage<UserWith<F>>> {
    const { data, error, response } = await api.GET("/users", { params: { query: wireQuery(query) } });
    if (data === undefined) throw new GatewayError(response.status, problemOf(error), response.url);
    return data as UserPage<UserWith<F>>;
  }

  /**
   * Every page of `GET /users` for these filters, in order, until `meta.has_more` is false.
   * Throws {@link PartialAnswerError} on a partial page (unless `allowPartial`), and
   * {@link InconsistentWalkError} when the total changes between pages.
   */
  async function* pages<F extends UserField = UserField>(
    query: UserFilters & FieldsOption<F> = {},
    walk: WalkOptions = {},
  ): AsyncGenerator<UserPage<UserWith<F>>, Meta | undefined, undefined> {
    const per_page = walk.per_page ?? 100;
    let first: Meta | undefined;
    for (let page = 1; ; page++) {
      const answer = await listUsers<F>({ ...query, page, per_page });
      const { meta } = answer;
      if (meta.partial && !walk.allowPartial) throw new PartialAnswerError(meta);
      if (first === undefined) first = meta;
      else if (meta.total !== first.total) {
        throw new InconsistentWalkError(`page ${page} says total ${meta.total}, page 1 said ${first.total}`);
      }
      yield answer;
      if (!meta.has_more) return meta;
      if (answer.links.next === null) throw new InconsistentWalkError(`page ${page} has more but no next link`);
    }
  }

  /** Every user, page by page (see {@link pages}). */
  async function* users<F extends UserField = UserField>(
    query: UserFilters & FieldsOption<F> = {},
    walk: WalkOptions = {},
  ): AsyncGenerator<UserWith<F>, Meta | undefined, undefined> {
    const it = pages<F>(query, walk);
    while (true) {
      const next = await it.next();
      if (next.done) return next.value;
      yield* next.value.data;
    }
  }

  /** `GET /users/{id}`: the user, or `undefined` for a 404. */
  async function getUser<F extends UserField = UserField>(
    id: string,
    query: FieldsOption<F> & { include?: "raw" } = {},
  ): Promise<UserWith<F> | undefined> {
    const { fields, ...rest } = query;
    const wire: Record<string, unknown> = { ...rest };
    if (fields !== undefined) wire.fields = serializeFields(fields);
    const { data, error, response } = await api.GET("/users/{id}", {
      params: { path: { id }, query: wire as NonNullable<paths["/users/{id}"]["get"]["parameters"]["query"]> },
    });
    if (response.status === 404) return undefined;
    if (data === undefined) throw new GatewayError(response.status, problemOf(error), response.url);
    return data as UserWith<F>;
  }

  /**
   * `GET /users/export`: every matching user, read line by line from the response stream
   * (never the whole body at once); the generator returns the final meta line. The caller
   * decides what `complete: false` means to it; a stream without the meta line throws
   * {@link ExportCutError}.
   *
   * ```ts
   * const it = client.exportUsers({ role: "admin", fields: fields("email") });
   * for (let r = await it.next(); ; r = await it.next()) { if (r.done) { meta = r.value; break } … }
   * ```
   * or {@link collectExport} / {@link forEachExported}.
   */
  async function* exportUsers<F extends UserField = UserField>(
    query: UserFilters & FieldsOption<F> = {},
    options: NdjsonOptions & { signal?: AbortSignal } = {},
  ): AsyncGenerator<UserWith<F>, ExportMeta, undefined> {
    const { signal, ...ndjson } = options;
    const { data, error, response } = await api.GET("/users/export", {
      params: { query: wireQuery(query) as NonNullable<paths["/users/export"]["get"]["parameters"]["query"]> },
      parseAs: "stream",
      headers: { Accept: "application/x-ndjson" },
      ...(signal ? { signal } : {}),
    });
    if (data === undefined || data === null) {
      if (response.ok) throw new ExportCutError(0, "the answer has no body");
      throw new GatewayError(response.status, problemOf(error), response.url);
    }
    return yield* readExportStream<UserWith<F>>(data, ndjson);
  }

  /** Calls `onUser` for each exported user as it arrives; resolves to the meta line. */
  async function forEachExported<F extends UserField = UserField>(
    query: UserFilters & FieldsOption<F>,
    onUser: (user: UserWith<F>) => void | Promise<void>,
    options: NdjsonOptions & { signal?: AbortSignal } = {},
  ): Promise<ExportMeta> {
    const it = exportUsers<F>(query, options);
    while (true) {
      const next = await it.next();
      if (next.done) return next.value;
      await onUser(next.value);
    }
  }

  return { api, listUsers, pages, users, getUser, exportUsers, forEachExported };
}

export type UsersClient = ReturnType<typeof createUsersClient>;
export type { FullUser };
