// Runs a wasm32-wasip1 test binary under Node's WASI: the filter core's unit tests, compiled
// to the same target Envoy executes. Used as CARGO_TARGET_WASM32_WASIP1_RUNNER.
import { readFile } from 'node:fs/promises';
import { WASI } from 'node:wasi';
import { argv, env, exit } from 'node:process';

const [, , wasmPath, ...args] = argv;
const wasi = new WASI({ version: 'preview1', args: [wasmPath, ...args], env, returnOnExit: true });
const module = await WebAssembly.compile(await readFile(wasmPath));
const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
const code = wasi.start(instance);
exit(typeof code === "number" ? code : 0);
