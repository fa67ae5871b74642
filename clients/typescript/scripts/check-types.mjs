// `npm run check-types`: regenerate the types from ../../openapi/openapi.json into a temp
// file, exactly as `npm run generate` does, and fail when the committed src/schema.d.ts
// differs from it (the document changed and `npm run generate` was not run).
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(join(root, "package.json"));
const pkg = JSON.parse(readFileSync(require.resolve("openapi-typescript/package.json"), "utf8"));
const cli = join(dirname(require.resolve("openapi-typescript/package.json")), typeof pkg.bin === "string" ? pkg.bin : pkg.bin["openapi-typescript"]);

const dir = mkdtempSync(join(tmpdir(), "users-gateway-types-"));
try {
  const fresh = join(dir, "schema.d.ts");
  execFileSync(process.execPath, [cli, "../../openapi/openapi.json", "--output", fresh], { cwd: root, stdio: ["ignore", "ignore", "inherit"] });
  const committed = readFileSync(join(root, "src/schema.d.ts"), "utf8");
  const generated = readFileSync(fresh, "utf8");
  if (committed !== generated) {
    const a = committed.split("\n");
    const b = generated.split("\n");
    let line = 0;
    while (line < a.length && line < b.length && a[line] === b[line]) line++;
    console.error("check-types: src/schema.d.ts is stale: it is not what openapi/openapi.json generates.");
    console.error(`  first difference at line ${line + 1}:`);
    console.error(`  committed: ${JSON.stringify(a[line] ?? "<end of file>")}`);
    console.error(`  generated: ${JSON.stringify(b[line] ?? "<end of file>")}`);
    console.error("  Run `npm run generate` in clients/typescript and commit src/schema.d.ts.");
    process.exit(1);
  }
  console.log(`check-types: src/schema.d.ts is up to date with openapi/openapi.json (openapi-typescript ${pkg.version})`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
