// The wasm engine (built into ./pkg by tools/build-web.sh) behind a queue: the Rust `Engine` is
// borrowed for the whole of each async call, so two overlapping calls would fail; every use goes
// through `EngineHost.run`, one after the other.

let wasmModule = null;

/** Loads and initialises the wasm package once; throws a readable error when it is missing. */
export async function loadWasm() {
  if (wasmModule) return wasmModule;
  let module;
  try {
    module = await import('./pkg/vlad_web.js');
    await module.default();
  } catch (e) {
    throw new Error(`pkg/vlad_web.js: ${e?.message ?? e}`);
  }
  wasmModule = module;
  return module;
}

/** A failure inside the wasm code itself (a Rust panic), after which the instance is unusable. */
export function isFatal(error) {
  return error instanceof WebAssembly.RuntimeError;
}

/** Readable text of anything thrown by the engine or the page. */
export function errorText(error) {
  if (error instanceof Error) return error.message || error.name;
  return String(error);
}

export class EngineHost {
  #engine = null;
  #queue = Promise.resolve();
  /** Set once a panic has left the wasm instance unusable; the text says why. */
  fatal = null;
  /** Called with the error text when the engine becomes unusable. */
  onFatal = () => {};

  /** `webgpu` or `cpu` (empty before `start`). */
  get backend() {
    return this.#engine?.backend ?? '';
  }

  /** Adapter name (with what `navigator.gpu` says about it), or why the CPU is used. */
  get adapter() {
    return this.#gpuInfo || (this.#engine?.adapter ?? '');
  }

  #gpuInfo = '';

  /** Whether an engine exists and is usable. */
  get ready() {
    return this.#engine !== null && this.fatal === null;
  }

  /** (Re)creates the engine: WebGPU when `preferGpu` and available, else the CPU. */
  start(preferGpu) {
    return this.run(async () => {
      const { Engine } = await loadWasm();
      const old = this.#engine;
      this.#engine = null;
      old?.free();
      this.#gpuInfo = '';
      this.#engine = await Engine.create(preferGpu);
      if (this.#engine.backend === 'webgpu') this.#gpuInfo = await describeGpu();
    }, { needsEngine: false });
  }

  /**
   * Runs `task(engine)` after every earlier task has finished. Errors reach the caller; a panic
   * additionally marks the host as unusable.
   */
  run(task, { needsEngine = true } = {}) {
    const next = this.#queue.then(async () => {
      if (this.fatal) throw new Error(this.fatal);
      if (needsEngine && !this.#engine) throw new Error('the engine is not running');
      try {
        return await task(this.#engine);
      } catch (e) {
        if (isFatal(e)) {
          this.fatal = errorText(e);
          this.onFatal(this.fatal);
        }
        throw e;
      }
    });
    this.#queue = next.catch(() => {});
    return next;
  }
}

/**
 * What the browser tells pages about its WebGPU adapter (vendor, architecture, description; wgpu
 * inside the engine does not see these), e.g. "google swiftshader (fallback adapter)".
 */
async function describeGpu() {
  try {
    const adapter = await navigator.gpu?.requestAdapter();
    const info = adapter?.info;
    if (!info) return '';
    const parts = [info.vendor, info.architecture, info.device, info.description].filter(Boolean);
    const unique = parts.filter((p, i) => parts.indexOf(p) === i);
    const fallback = info.isFallbackAdapter ?? adapter.isFallbackAdapter;
    return unique.join(' ') + (fallback ? ' (fallback adapter)' : '');
  } catch {
    return '';
  }
}
