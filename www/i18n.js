// Two languages. Static text in index.html comes in pairs (`<span lang="en">…</span><span
// lang="ko">…</span>`, the inactive one hidden by CSS); attributes, <option> texts and messages the
// scripts write come from the table below.

const MESSAGES = {
  en: {
    'lang.toggle': '한국어',
    'lang.toggle.label': 'Switch the page to Korean',
    'engine.loading': 'Loading the WebAssembly engine…',
    'engine.missing': 'The WebAssembly engine is missing or failed to load ({error}). Build it with tools/build-web.sh (see www/README.md); the teaching toys still work.',
    'engine.starting': 'Starting the engine ({mode})…',
    'engine.ready.webgpu': 'WebGPU: {adapter}',
    'engine.ready.cpu': '{adapter}',
    'engine.broken': 'The engine stopped after an internal error ({error}). Reload the page to start again.',
    'engine.gpu-lost': 'The GPU engine stopped ({error}); continuing on the CPU with the same model, settings and images. Tick "Use the GPU" to try it again.',
    'mode.gpu': 'GPU preferred',
    'mode.cpu': 'CPU only',
    'model.none': 'No model loaded.',
    'model.reading': 'Reading {name}…',
    'model.loading': 'Building the model from {name} ({size})…',
    'model.loaded': '{arch}, {activation} GELU, {size}×{size} input, {tensors} tensors (from {source}, {time} ms)',
    'model.warnings': '{count} warnings: {list}',
    'model.cached.none': 'Nothing cached yet.',
    'model.cached.load': 'Load',
    'model.cached.entry': '{name} ({size}, {date})',
    'model.cache.unavailable': 'The Cache API is not available here (it needs https or localhost): weights will not be kept.',
    'model.cache.cleared': 'Cache cleared.',
    'model.cache.failed': 'Could not keep the weights in the cache: {error}',
    'fetch.start': 'Connecting to {url}…',
    'fetch.progress': '{done} of {total}',
    'fetch.progress.unknown': '{done} (size unknown)',
    'fetch.cached': 'Found in the browser cache.',
    'fetch.bad-url': 'Not a valid URL: {url}',
    'fetch.http': 'The server answered {status} {statusText} for {url}',
    'fetch.network': 'Could not download {url}: {error}. The server must allow cross-origin requests (Hugging Face file URLs do).',
    'fetch.aborted': 'Download cancelled.',
    'detector.coming': 'coming',
    'detector.needs-model': 'Load a model first.',
    'detector.ready': '{detector} ready for "{class}" at {size}×{size}.',
    'detector.option.native': 'native',
    'detector.zero-shot': 'Zero-shot CLIP',
    'detector.winclip': 'WinCLIP',
    'detector.aa-clip': 'AA-CLIP',
    'detector.bayes-pfl': 'Bayes-PFL',
    'detector.vand': 'VAND / APRIL-GAN',
    'detector.clip-ad': 'CLIP-AD (SDP)',
    'detector.clip-ad-plus': 'CLIP-AD (SDP+)',
    'detector.anomaly-clip': 'AnomalyCLIP',
    'detector.ada-clip': 'AdaCLIP',
    'rvs.dbscan': 'DBSCAN (MVTec and others)',
    'rvs.dbscan-visa': 'DBSCAN (VisA)',
    'rvs.mean': 'Mean',
    'adaclip.hsf': 'HSF (official)',
    'adaclip.cls': 'Projected CLS only (use_hsf off)',
    'prompts.single': 'One pair: "a photo of a normal/anomalous {class}."',
    'prompts.winclip': 'WinCLIP prompt ensemble (7 + 4 states × 21 templates)',
    'refs.none': 'No reference images.',
    'refs.count': '{count} normal reference image(s); the calibrated score maps the largest reference score to 0.5.',
    'refs.adding': 'Scoring reference {index} of {count}…',
    'images.waiting-model': 'Waiting for a model and a detector…',
    'images.queued': 'Queued',
    'images.running': 'Scoring…',
    'images.decoding': 'Decoding…',
    'images.remove': 'Remove',
    'images.score': 'Image score',
    'images.calibrated': 'calibrated',
    'images.backend': 'Ran on',
    'images.original': 'Original image: {name}',
    'images.overlay': 'Anomaly heat map over {name}',
    'images.decode-failed': 'Cannot read {name} as an image: {error}',
    'timing.decode': 'decode',
    'timing.preprocess': 'preprocess',
    'timing.submit': 'submit',
    'timing.compute_and_readback': 'compute + read-back',
    'timing.total': 'engine total',
    'timing.draw': 'draw',
    'unit.ms': 'ms',
    'teach.needs-model': 'Load a model in the Detect tab to run this on the engine.',
    'teach.needs-engine': 'Waiting for the engine…',
    'teach.needs-image': 'Choose an image first (upload one here or in the Detect tab).',
    'teach.computing': 'Computing…',
    'teach.prompt': 'Prompt',
    'teach.cosine': 'Cosine',
    'teach.probability': 'Probability (τ = {tau})',
    'teach.tokens.count': '{count} tokens up to EOT, then {pad} zeros of padding.',
    'teach.flow.mean': 'Mean of the R = {r} flowed samples: ({x}, {y}); mean of 4000 samples: ({mx}, {my}).',
    'teach.no-image': '(none)',
    'error.generic': 'Error: {error}',
    'model.arch.auto': 'from the file',
    'model.act.auto': 'as recorded',
    'pos.a': 'A: bicubic, antialiased (AA-CLIP, Bayes-PFL)',
    'pos.b': 'B: bicubic a = −0.75 (AdaCLIP)',
    'pos.c': 'C: bilinear (AnomalyCLIP)',
    'scale.image': 'each image: its own min … max',
    'scale.shared': 'shared: min … max over all images',
    'detector.checkpoint': 'Checkpoint file',
    'detector.checkpoint-url': '…or checkpoint URL',
    'detector.checkpoint-fetch': 'Download',
    'detector.checkpoint-downloading': 'Downloading {url} …',
    'detector.checkpoint-progress': 'Downloading: {got} of {total}',
    'detector.checkpoint-loaded': 'Checkpoint {names}: {tensors} tensors.',
  },
  ko: {
    'lang.toggle': 'English',
    'lang.toggle.label': '페이지를 영어로 보기',
    'engine.loading': 'WebAssembly 엔진을 불러오는 중…',
    'engine.missing': 'WebAssembly 엔진이 없거나 불러오지 못했습니다 ({error}). tools/build-web.sh로 빌드하세요 (www/README.md 참고). 학습용 예제는 그대로 동작합니다.',
    'engine.starting': '엔진 시작 중 ({mode})…',
    'engine.ready.webgpu': 'WebGPU: {adapter}',
    'engine.ready.cpu': '{adapter}',
    'engine.broken': '내부 오류로 엔진이 멈췄습니다 ({error}). 페이지를 새로 고쳐 다시 시작하세요.',
    'engine.gpu-lost': 'GPU 엔진이 멈췄습니다 ({error}). 같은 모델, 설정, 이미지로 CPU에서 계속합니다. GPU를 다시 쓰려면 "GPU(WebGPU) 사용"을 선택하세요.',
    'mode.gpu': 'GPU 우선',
    'mode.cpu': 'CPU 전용',
    'model.none': '불러온 모델이 없습니다.',
    'model.reading': '{name} 읽는 중…',
    'model.loading': '{name}에서 모델을 만드는 중 ({size})…',
    'model.loaded': '{arch}, {activation} GELU, 입력 {size}×{size}, 텐서 {tensors}개 ({source}, {time} ms)',
    'model.warnings': '경고 {count}개: {list}',
    'model.cached.none': '아직 캐시된 가중치가 없습니다.',
    'model.cached.load': '불러오기',
    'model.cached.entry': '{name} ({size}, {date})',
    'model.cache.unavailable': '이 환경에서는 Cache API를 쓸 수 없습니다 (https 또는 localhost 필요). 가중치가 저장되지 않습니다.',
    'model.cache.cleared': '캐시를 비웠습니다.',
    'model.cache.failed': '가중치를 캐시에 저장하지 못했습니다: {error}',
    'fetch.start': '{url}에 연결 중…',
    'fetch.progress': '{total} 중 {done}',
    'fetch.progress.unknown': '{done} (전체 크기 모름)',
    'fetch.cached': '브라우저 캐시에서 찾았습니다.',
    'fetch.bad-url': '올바른 URL이 아닙니다: {url}',
    'fetch.http': '서버 응답 {status} {statusText}: {url}',
    'fetch.network': '{url}을(를) 내려받지 못했습니다: {error}. 서버가 cross-origin 요청을 허용해야 합니다 (Hugging Face 파일 URL은 허용).',
    'fetch.aborted': '다운로드를 취소했습니다.',
    'detector.coming': '준비 중',
    'detector.needs-model': '먼저 모델을 불러오세요.',
    'detector.ready': '{detector} 준비 완료: "{class}", {size}×{size}.',
    'detector.option.native': '기본값',
    'detector.zero-shot': '제로샷 CLIP',
    'detector.winclip': 'WinCLIP',
    'detector.aa-clip': 'AA-CLIP',
    'detector.bayes-pfl': 'Bayes-PFL',
    'detector.vand': 'VAND / APRIL-GAN',
    'detector.clip-ad': 'CLIP-AD (SDP)',
    'detector.clip-ad-plus': 'CLIP-AD (SDP+)',
    'detector.anomaly-clip': 'AnomalyCLIP',
    'detector.ada-clip': 'AdaCLIP',
    'rvs.dbscan': 'DBSCAN (MVTec 등)',
    'rvs.dbscan-visa': 'DBSCAN (VisA)',
    'rvs.mean': '평균',
    'adaclip.hsf': 'HSF (공식)',
    'adaclip.cls': '투영된 CLS만 (use_hsf 끔)',
    'prompts.single': '한 쌍: "a photo of a normal/anomalous {class}."',
    'prompts.winclip': 'WinCLIP 프롬프트 앙상블 (상태 7 + 4개 × 템플릿 21개)',
    'refs.none': '참조 이미지가 없습니다.',
    'refs.count': '정상 참조 이미지 {count}장. 보정 점수는 참조 점수 중 가장 큰 값을 0.5로 둡니다.',
    'refs.adding': '참조 이미지 {count}장 중 {index}번째 채점 중…',
    'images.waiting-model': '모델과 검출기를 기다리는 중…',
    'images.queued': '대기 중',
    'images.running': '채점 중…',
    'images.decoding': '디코딩 중…',
    'images.remove': '삭제',
    'images.score': '이미지 점수',
    'images.calibrated': '보정',
    'images.backend': '실행 장치',
    'images.original': '원본 이미지: {name}',
    'images.overlay': '{name} 위의 이상 히트맵',
    'images.decode-failed': '{name}을(를) 이미지로 읽을 수 없습니다: {error}',
    'timing.decode': '디코딩',
    'timing.preprocess': '전처리',
    'timing.submit': '제출',
    'timing.compute_and_readback': '계산 + 읽기',
    'timing.total': '엔진 합계',
    'timing.draw': '그리기',
    'unit.ms': 'ms',
    'teach.needs-model': '엔진으로 계산하려면 Detect 탭에서 모델을 불러오세요.',
    'teach.needs-engine': '엔진을 기다리는 중…',
    'teach.needs-image': '먼저 이미지를 고르세요 (여기서 올리거나 Detect 탭에서 올리세요).',
    'teach.computing': '계산 중…',
    'teach.prompt': '프롬프트',
    'teach.cosine': '코사인 유사도',
    'teach.probability': '확률 (τ = {tau})',
    'teach.tokens.count': 'EOT까지 토큰 {count}개, 이후 0으로 채운 패딩 {pad}개.',
    'teach.flow.mean': 'R = {r}개 샘플(흐름 통과 후)의 평균: ({x}, {y}); 샘플 4000개의 평균: ({mx}, {my}).',
    'teach.no-image': '(없음)',
    'error.generic': '오류: {error}',
    'model.arch.auto': '파일에서 인식',
    'model.act.auto': '기록된 대로',
    'pos.a': 'A: bicubic, antialias (AA-CLIP, Bayes-PFL)',
    'pos.b': 'B: bicubic a = −0.75 (AdaCLIP)',
    'pos.c': 'C: bilinear (AnomalyCLIP)',
    'scale.image': '이미지별: 각자의 최솟값 … 최댓값',
    'scale.shared': '공통: 모든 이미지의 최솟값 … 최댓값',
    'detector.checkpoint': '체크포인트 파일',
    'detector.checkpoint-url': '…또는 체크포인트 URL',
    'detector.checkpoint-fetch': '다운로드',
    'detector.checkpoint-downloading': '{url} 다운로드 중…',
    'detector.checkpoint-progress': '다운로드: {got} / {total}',
    'detector.checkpoint-loaded': '체크포인트 {names}: 텐서 {tensors}개.',
  },
};

let language = 'en';

/** The active language, `en` or `ko`. */
export function currentLanguage() {
  return language;
}

/** Message `key` in the active language with `{name}` placeholders filled from `vars`. */
export function t(key, vars = {}) {
  const text = MESSAGES[language][key] ?? MESSAGES.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (m, name) => (name in vars ? String(vars[name]) : m));
}

/** Fills the texts and attributes marked with `data-i18n…` keys under `root` in the active language. */
export function translate(root = document) {
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const attr of ['placeholder', 'aria-label', 'title']) {
    for (const el of root.querySelectorAll(`[data-i18n-${attr}]`)) {
      el.setAttribute(attr, t(el.getAttribute(`data-i18n-${attr}`)));
    }
  }
}

/**
 * Switches the page language: the root `lang` attribute (which the CSS uses to show one text of
 * each pair) and the marked texts and attributes. Fires `vlad-language` on `document` for scripts
 * that render messages.
 */
export function setLanguage(lang) {
  language = lang === 'ko' ? 'ko' : 'en';
  document.documentElement.lang = language;
  translate(document);
  try {
    localStorage.setItem('vlad.language', language);
  } catch {
    // storage may be disabled; the choice then lasts for this visit only
  }
  document.dispatchEvent(new CustomEvent('vlad-language', { detail: language }));
}

/** The language to start with: a stored choice, else the browser's preference. */
export function initialLanguage() {
  try {
    const stored = localStorage.getItem('vlad.language');
    if (stored === 'en' || stored === 'ko') return stored;
  } catch {
    // ignore
  }
  return (navigator.languages ?? [navigator.language]).some((l) => l?.toLowerCase().startsWith('ko')) ? 'ko' : 'en';
}

/** Human-readable byte count (binary units). */
export function formatBytes(n) {
  if (!Number.isFinite(n)) return '?';
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}
