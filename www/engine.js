// The wasm engine (built into ./pkg by tools/build-web.sh) behind a queue: the Rust `Engine` is
// borrowed for the whole of each async call, so two overlapping calls would fail; every use goes
// through `EngineHost.run`, one after the other.

let wasmModule = null;
let instances = 0;

/**
 * Loads and initialises the wasm package once; throws a readable error when it is missing.
 * `fresh` loads a second, independent instance (after a panic or a lost GPU left the first one
 * unusable): the query string makes the module URL distinct, so the browser evaluates the glue
 * again with its own memory.
 */
export async function loadWasm({ fresh = false } = {}) {
  if (wasmModule && !fresh) return wasmModule;
  instances += 1;
  const url = instances === 1 ? './pkg/vlad_web.js' : `./pkg/vlad_web.js?instance=${instances}`;
  let module;
  try {
    module = await import(url);
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

/** The WebGPU engine stopped (device lost, out of GPU memory, or a panic on the GPU path). */
export class GpuFailure extends Error {
  name = 'GpuFailure';
}

/** Readable text of anything thrown by the engine or the page. */
export function errorText(error) {
  if (error instanceof Error) return error.message || error.name;
  return String(error);
}

/** A promise that `fail` rejects (and that never reports an unhandled rejection). */
function failureSignal() {
  let fail;
  const promise = new Promise((_, reject) => {
    fail = reject;
  });
  promise.catch(() => {});
  return { promise, fail };
}

export class EngineHost {
  #engine = null;
  #queue = Promise.resolve();
  /** Bumped by every `start`: events of an engine's device after it was replaced are ignored. */
  #generation = 0;
  #gpuSignal = failureSignal();
  /** Set once a panic has left the wasm instance unusable; the text says why. */
  fatal = null;
  /** Set when the WebGPU engine stopped; the text says why. `start` clears it. */
  gpuFailure = null;
  /** Called with the error text when the engine becomes unusable. */
  onFatal = () => {};
  /**
   * Called with the error text when the WebGPU engine stops (its device was lost, the GPU ran out
   * of memory, or its code panicked); the page then starts the CPU engine.
   */
  onGpuLost = () => {};

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
    return this.#engine !== null && this.fatal === null && this.gpuFailure === null;
  }

  /**
   * (Re)creates the engine: WebGPU when `preferGpu` and available, else the CPU. After a panic or
   * a GPU failure the old instance is abandoned (not freed: a hung call may still hold it) and a
   * fresh one is loaded.
   */
  start(preferGpu) {
    return this.run(async () => {
      const broken = this.fatal !== null || this.gpuFailure !== null;
      const { Engine } = await loadWasm({ fresh: broken });
      const old = this.#engine;
      this.#engine = null;
      this.#generation += 1;
      const generation = this.#generation;
      if (old && !broken) old.free();
      this.fatal = null;
      this.gpuFailure = null;
      this.#gpuSignal = failureSignal();
      this.#gpuInfo = '';
      const devices = [];
      const engine = await recordingDevices(devices, () => Engine.create(preferGpu));
      this.#engine = engine;
      if (engine.backend === 'webgpu') {
        for (const device of devices) this.#watch(device, generation);
        this.#gpuInfo = await describeGpu();
      }
    }, { needsEngine: false, afterFailure: true });
  }

  /** Turns the loss or an out-of-memory error of the engine's GPU device into a GPU failure. */
  #watch(device, generation) {
    device.lost?.then((info) => {
      const why = [info?.reason, info?.message].filter(Boolean).join(': ');
      this.#gpuFailed(generation, `the GPU device was lost (${why || 'no reason given'})`);
    });
    device.addEventListener?.('uncapturederror', (event) => {
      if (typeof GPUOutOfMemoryError !== 'undefined' && event.error instanceof GPUOutOfMemoryError) {
        this.#gpuFailed(generation, `the GPU ran out of memory (${event.error.message || 'no details'})`);
      }
    });
  }

  #gpuFailed(generation, text) {
    if (generation !== this.#generation || this.gpuFailure !== null) return;
    this.gpuFailure = text;
    // A call waiting on the lost device may never settle: release the queue now.
    this.#gpuSignal.fail(new GpuFailure(text));
    this.onGpuLost(text);
  }

  /**
   * Runs `task(engine)` after every earlier task has finished. Errors reach the caller; a panic
   * additionally marks the host as unusable (on the WebGPU engine: as a GPU failure, which the
   * CPU engine recovers from). A call on the WebGPU engine ends with a `GpuFailure` as soon as
   * the device is lost, even if the call itself never settles.
   */
  run(task, { needsEngine = true, afterFailure = false } = {}) {
    const next = this.#queue.then(async () => {
      if (!afterFailure) {
        if (this.gpuFailure) throw new GpuFailure(this.gpuFailure);
        if (this.fatal) throw new Error(this.fatal);
      }
      if (needsEngine && !this.#engine) throw new Error('the engine is not running');
      // `start` replaces a failed GPU engine: it must not be cut short by that engine's signal.
      const onGpu = this.backend === 'webgpu' && !afterFailure;
      const generation = this.#generation;
      const work = (async () => task(this.#engine))();
      try {
        if (!onGpu) return await work;
        work.catch(() => {}); // when the device signal wins, the abandoned call's end is not news
        return await Promise.race([work, this.#gpuSignal.promise]);
      } catch (e) {
        if (e instanceof GpuFailure) throw e;
        if (onGpu && (isFatal(e) || this.gpuFailure !== null)) {
          this.#gpuFailed(generation, `the WebGPU engine stopped: ${errorText(e)}`);
          throw new GpuFailure(this.gpuFailure ?? errorText(e));
        }
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
 * Runs `create` while recording every GPUDevice an adapter hands out (wgpu asks for its device
 * inside the engine; the page needs it to hear of its loss).
 */
async function recordingDevices(devices, create) {
  const proto = globalThis.GPUAdapter?.prototype;
  const original = proto?.requestDevice;
  if (typeof original !== 'function') return create();
  proto.requestDevice = async function requestDevice(...args) {
    const device = await original.apply(this, args);
    devices.push(device);
    return device;
  };
  try {
    return await create();
  } finally {
    proto.requestDevice = original;
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
