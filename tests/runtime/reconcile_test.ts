/** The supervisor reconciles to desired state, whoever wrote it (here: straight to the store). */
import assert from "node:assert/strict";
import { Supervisor } from "../../runtime/supervisor.ts";
import { waitFor } from "../_helpers.ts";
import { fakeSpec, putFakeVersion, withFakes } from "./_fake.ts";

Deno.test("Supervisor.reconcile() follows desired-state writes it did not make: start, scale, new version, delete", async () => {
  await withFakes(() => ({}), async ({ ctx, driver }) => {
    const sup = new Supervisor(ctx, { driver });
    await sup.restore(); // from here on it watches desired state
    try {
      const put = (v: string) =>
        putFakeVersion(
          ctx,
          fakeSpec({ name: "w", replicas: 1, stop_grace: "0s", drain_grace: "0s" }),
          v,
        );
      await put("v-1");
      await ctx.desired.activate("w", "v-1", 2, { expect: 0 });
      await waitFor(() => sup.services.get("w")?.ready === 2, {
        what: "2 replicas from the write",
      });

      await ctx.desired.setReplicas("w", 4);
      await waitFor(() => driver.running.length === 4, { what: "scaled to 4" });

      await put("v-2");
      await ctx.desired.activate("w", "v-2", 4);
      await waitFor(() => {
        const s = sup.services.get("w")!.status();
        return s.length === 4 && s.every((r) => r.version === "v-2");
      }, { what: "rolled to v-2" });
      assert.equal(driver.running.length, 4);

      await ctx.desired.deleteDeployment("w");
      await waitFor(() => !sup.services.has("w") && driver.running.length === 0, {
        what: "stopped after the delete",
      });
    } finally {
      await sup.shutdown();
    }
  });
});
