import { type Paths, paths as defaultPaths } from "../core/paths.ts";
import { AgentClient } from "../runtime/client.ts";

/** What every command gets: the data root, a lazily connected agent client, and output. */
export class App {
  #client?: AgentClient;
  readonly paths: Paths;
  /** The exit code the command asks for (0 unless it sets one). */
  exitCode = 0;

  constructor(paths: Paths = defaultPaths(), readonly out: (text: string) => void = println) {
    this.paths = paths;
  }

  /** The agent, started in the background when none runs. */
  async agent(): Promise<AgentClient> {
    this.#client ??= await AgentClient.connect(this.paths);
    return this.#client;
  }

  close(): void {
    this.#client?.close();
  }
}

function println(text: string): void {
  console.log(text);
}
