import assert from "node:assert/strict";
import { commandVariables, expandCommand } from "../../core/command.ts";
import { assertInvalid } from "../_helpers.ts";

Deno.test("commandVariables() lists $NAME and ${NAME} references once each; $$ is none", () => {
  assert.deepEqual(
    commandVariables(["serve", "--port", "$PORT", "--bind=127.0.0.1:${PORT}", "${HOME}/x", "$$5"]),
    ["PORT", "HOME"],
  );
  assert.deepEqual(commandVariables(["plain", "args"]), []);
});

Deno.test("commandVariables() refuses a $ that starts no variable", () => {
  for (const arg of ["$1", "${PORT", "a$", "${}", "$-x"]) {
    assertInvalid(() => commandVariables([arg]), /must start a variable like \$PORT/);
  }
});

Deno.test("expandCommand() substitutes from the env, keeps $$ as $, never splits arguments", () => {
  assert.deepEqual(
    expandCommand(["tool", "--port", "$PORT", "${HOST}:${PORT}", "$$PORT", "a b $X"], {
      PORT: "8080",
      HOST: "127.0.0.1",
      X: "$PORT; rm -rf /",
    }),
    ["tool", "--port", "8080", "127.0.0.1:8080", "$PORT", "a b $PORT; rm -rf /"],
  );
});

Deno.test("expandCommand() names the first variable the env does not set", () => {
  assertInvalid(
    () => expandCommand(["tool", "$PORT", "$TOKEN"], { PORT: "1" }),
    "command refers to $TOKEN, which is not set: set it in [env] or with --env TOKEN=VALUE",
  );
});
