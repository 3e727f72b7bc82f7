import assert from "node:assert/strict";
import { quoteArg, renderUnit, unitPath } from "../../runtime/systemd.ts";

Deno.test("renderUnit() runs prisn agent run in the foreground with the flags given, for this home", () => {
  const unit = renderUnit({
    home: "/var/lib/prisn",
    flags: ["--listen", "127.0.0.1:7070", "--node", "web 1"],
    user: false,
  });
  const exec = /^ExecStart=(.*)$/m.exec(unit)![1];
  assert.match(exec, / agent run --listen 127\.0\.0\.1:7070 --node "web 1"$/);
  assert.ok(!exec.includes("--background"), "the foreground form: systemd keeps its output");
  assert.match(unit, /^Environment=PRISN_HOME=\/var\/lib\/prisn$/m);
  assert.match(unit, /^KillMode=mixed$/m, "the agent stops its replicas itself");
  assert.match(unit, /^Restart=on-failure$/m);
  assert.match(unit, /^WantedBy=multi-user\.target$/m);
  assert.match(unit, /^After=network-online\.target$/m);
  const user = renderUnit({ home: "/home/me/.prisn", flags: [], user: true });
  assert.match(user, /^WantedBy=default\.target$/m);
  assert.match(/^ExecStart=(.*)$/m.exec(user)![1], / agent run$/);
});

Deno.test("quoteArg() keeps plain words and quotes what systemd would otherwise read", () => {
  assert.equal(quoteArg("--listen"), "--listen");
  assert.equal(quoteArg("127.0.0.1:7070"), "127.0.0.1:7070");
  assert.equal(quoteArg("web 1"), '"web 1"');
  assert.equal(quoteArg("100%"), "100%%");
  assert.equal(quoteArg("$HOME"), '"$$HOME"');
  assert.equal(quoteArg('a"b\\c'), '"a\\"b\\\\c"');
});

Deno.test("unitPath() is /etc/systemd/system, or the user's systemd folder under XDG_CONFIG_HOME", () => {
  assert.equal(unitPath(false), "/etc/systemd/system/prisn.service");
  const saved = Deno.env.get("XDG_CONFIG_HOME");
  try {
    Deno.env.set("XDG_CONFIG_HOME", "/x/cfg");
    assert.equal(unitPath(true), "/x/cfg/systemd/user/prisn.service");
  } finally {
    if (saved === undefined) Deno.env.delete("XDG_CONFIG_HOME");
    else Deno.env.set("XDG_CONFIG_HOME", saved);
  }
});
