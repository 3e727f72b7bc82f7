import assert from "node:assert/strict";
import { join } from "node:path";
import { Contexts, contextsFile, validateServer } from "../../core/contexts.ts";
import { assertInvalid } from "../_helpers.ts";

Deno.test("contexts live under XDG_CONFIG_HOME, else ~/.config", () => {
  const saved = { xdg: Deno.env.get("XDG_CONFIG_HOME"), home: Deno.env.get("HOME") };
  try {
    Deno.env.set("XDG_CONFIG_HOME", "/x/config");
    assert.equal(contextsFile(), "/x/config/prisn/contexts.toml");
    Deno.env.delete("XDG_CONFIG_HOME");
    Deno.env.set("HOME", "/home/me");
    assert.equal(contextsFile(), "/home/me/.config/prisn/contexts.toml");
  } finally {
    if (saved.xdg === undefined) Deno.env.delete("XDG_CONFIG_HOME");
    else Deno.env.set("XDG_CONFIG_HOME", saved.xdg);
    if (saved.home !== undefined) Deno.env.set("HOME", saved.home);
  }
});

Deno.test("Contexts add, use and rm round-trip through a 0600 TOML file; the first added is current", async () => {
  const dir = await Deno.makeTempDir({ prefix: "prisn-contexts-test-" });
  try {
    const file = join(dir, "prisn", "contexts.toml");
    const c = await Contexts.open(file);
    await c.add("dev", { server: "http://127.0.0.1:7070/", token: "t1" });
    await c.add("prod", { server: "https://prisn.example:8443", token: "t2", ca: "/ca.pem" });
    assert.equal((await Deno.stat(file)).mode! & 0o777, 0o600);
    const again = await Contexts.open(file);
    assert.equal(again.current, "dev");
    assert.deepEqual({ ...again.get("dev") }, { server: "http://127.0.0.1:7070", token: "t1" });
    await again.use("prod");
    assert.equal((await Contexts.open(file)).current, "prod");
    await again.remove("prod");
    const left = await Contexts.open(file);
    assert.equal(left.current, undefined);
    assert.deepEqual(left.list().map((x) => x.name), ["dev"]);
    await assert.rejects(left.use("prod"), /context "prod" not found in .*contexts\.toml/);
    await assert.rejects(left.add("dev", { server: "ftp://x", token: "t" }), /is not http\(s\)/);
    await Deno.writeTextFile(file, "contexts = 3 = 4\n");
    await assert.rejects(Contexts.open(file), /is not valid TOML/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("validateServer() takes an http(s) origin and nothing more", () => {
  assert.equal(validateServer("https://h:8443/"), "https://h:8443");
  assertInvalid(() => validateServer("h:8443"), /is not http\(s\)|is not a URL/);
  assertInvalid(() => validateServer("https://h:8443/api"), /more than a host and port/);
  assertInvalid(() => validateServer("not a url"), /is not a URL/);
});
