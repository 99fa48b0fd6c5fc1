// The dashboard (web/, embedded in the server binary) runs this package's compiled modules from
// web/client/. `node scripts/sync-web.mjs` copies dist/*.js there after `tsc`; with `--check` it
// only compares and fails when web/client/ is not what the TypeScript source compiles to (CI).

import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.join(here, "..", "dist");
const web = path.join(here, "..", "..", "..", "web", "client");
const check = process.argv.includes("--check");

const js = (dir) => readdirSync(dir).filter((f) => f.endsWith(".js")).sort();
const want = js(dist);
if (check) {
  const have = js(web);
  const stale = want.filter((f) => !have.includes(f) || readFileSync(path.join(dist, f), "utf8") !== readFileSync(path.join(web, f), "utf8"));
  const extra = have.filter((f) => !want.includes(f));
  if (stale.length || extra.length) {
    console.error(`web/client/ is not the compiled clients/js (stale: ${stale.join(", ") || "-"}; extra: ${extra.join(", ") || "-"}); run npm run build in clients/js and commit`);
    process.exit(1);
  }
  console.log(`web/client/ matches clients/js/dist (${want.length} modules)`);
} else {
  rmSync(web, { recursive: true, force: true });
  mkdirSync(web, { recursive: true });
  for (const f of want) copyFileSync(path.join(dist, f), path.join(web, f));
  console.log(`copied ${want.length} modules to web/client/`);
}
