// The detector list. Each entry says what the page must show for it (a checkpoint field, option
// controls) and how its options become the JSON for `engine.set_detector(name, options)`.
// A detector is offered once the engine lists it (`Engine.detectors()`) — until then it is shown
// disabled as "coming", never faked.

/**
 * @typedef {object} OptionSpec
 * @property {string} key        JSON key passed to the engine
 * @property {'select'|'number'|'range'} type
 * @property {string} labelEn
 * @property {string} labelKo
 * @property {Array<[string, string]>} [choices]   value and i18n key, for selects
 * @property {number} [min]
 * @property {number} [max]
 * @property {number} [step]
 * @property {number|string} [value]  default ('' = the model's native value, sent as absent)
 */

/** @type {Array<{id: string, checkpoint: boolean, references: string, options: OptionSpec[], noteEn: string, noteKo: string}>} */
export const DETECTORS = [
  {
    id: 'zero-shot',
    checkpoint: false,
    references: 'calibration',
    noteEn: 'Plain CLIP: image and patch embeddings against a normal and an anomalous prompt. Its maps localise poorly (the papers\' "CLIP" row); a baseline.',
    noteKo: '기본 CLIP: 이미지·패치 임베딩을 정상/이상 프롬프트와 비교합니다. 위치 추정은 약합니다 (논문 표의 "CLIP" 행). 비교 기준입니다.',
    options: [
      { key: 'prompts', type: 'select', labelEn: 'Prompts', labelKo: '프롬프트', value: 'single',
        choices: [['single', 'prompts.single'], ['winclip', 'prompts.winclip']] },
      { key: 'image_size', type: 'number', labelEn: 'Input size (px)', labelKo: '입력 크기 (px)', min: 8, max: 1024, step: 1, value: '' },
    ],
  },
  {
    id: 'winclip',
    checkpoint: false,
    references: 'memory',
    noteEn: 'WinCLIP: multi-scale windows and a compositional prompt ensemble; with normal references it becomes WinCLIP+ (few-shot).',
    noteKo: 'WinCLIP: 다중 스케일 윈도우와 조합형 프롬프트 앙상블. 정상 참조 이미지가 있으면 WinCLIP+ (few-shot)가 됩니다.',
    // Runs at the backbone's native input size (its windows are cut from the native patch grid).
    options: [
      { key: 'temperature', type: 'number', labelEn: 'Softmax temperature τ', labelKo: '소프트맥스 온도 τ', min: 0.001, max: 1, step: 0.001, value: 0.07 },
    ],
  },
  {
    id: 'aa-clip',
    checkpoint: true,
    references: 'calibration',
    noteEn: 'AA-CLIP (CVPR 2025): residual adapters trained in two stages; needs its text- and image-adapter checkpoint (the official text_adapter.pth / image_adapter.pth, or the safetensors/burnpack files vlad writes; select both files). On WebGPU the first detection compiles its kernels and can take a while.',
    noteKo: 'AA-CLIP (CVPR 2025): 두 단계로 학습한 residual adapter. 텍스트·이미지 adapter 체크포인트가 필요합니다 (공식 text_adapter.pth / image_adapter.pth 또는 vlad가 쓰는 safetensors·burnpack; 두 파일을 함께 선택). WebGPU에서는 첫 검출 때 커널을 컴파일하므로 시간이 걸릴 수 있습니다.',
    options: [
      { key: 'image_size', type: 'number', labelEn: 'Input size (px)', labelKo: '입력 크기 (px)', min: 8, max: 1024, step: 1, value: '' },
    ],
  },
  {
    id: 'bayes-pfl',
    checkpoint: true,
    references: 'calibration',
    noteEn: 'Bayes-PFL (CVPR 2025): prompts sampled from learned distributions; R Monte-Carlo samples per distribution. Needs its checkpoint (the released train_visa.pth / train_mvtec.pth, or the safetensors/burnpack files vlad writes). On WebGPU the first detection compiles its kernels and can take a while.',
    noteKo: 'Bayes-PFL (CVPR 2025): 학습된 분포에서 프롬프트를 샘플링합니다. 분포마다 R개의 몬테카를로 샘플. 체크포인트(공개된 train_visa.pth / train_mvtec.pth 또는 vlad의 safetensors·burnpack)가 필요합니다. WebGPU에서는 첫 검출 때 커널을 컴파일하므로 시간이 걸릴 수 있습니다.',
    options: [
      { key: 'samples', type: 'range', labelEn: 'Samples R', labelKo: '샘플 수 R', min: 1, max: 20, step: 1, value: 10 },
      { key: 'image_size', type: 'number', labelEn: 'Input size (px)', labelKo: '입력 크기 (px)', min: 8, max: 1024, step: 1, value: '' },
    ],
  },
  {
    id: 'vand',
    checkpoint: true,
    references: 'memory',
    noteEn: 'VAND / APRIL-GAN (CVPR 2023 workshop): four trained linear layers map patch tokens of blocks 6/12/18/24 into the text space; the image score is plain CLIP\'s. Normal references become its few-shot memory. Needs its checkpoint (the released mvtec_pretrained.pth / visa_pretrained.pth, or the safetensors file vlad train vand writes).',
    noteKo: 'VAND / APRIL-GAN (CVPR 2023 워크숍): 학습된 선형층 4개가 블록 6/12/18/24의 패치 토큰을 텍스트 공간으로 옮깁니다. 이미지 점수는 기본 CLIP의 것입니다. 정상 참조 이미지는 few-shot 메모리가 됩니다. 체크포인트(공개된 mvtec_pretrained.pth / visa_pretrained.pth 또는 vlad train vand가 쓰는 safetensors)가 필요합니다.',
    options: [
      { key: 'image_size', type: 'number', labelEn: 'Input size (px)', labelKo: '입력 크기 (px)', min: 8, max: 1024, step: 1, value: '' },
    ],
  },
  {
    id: 'clip-ad',
    checkpoint: false,
    references: 'calibration',
    noteEn: 'CLIP-AD SDP: training-free. Every block also runs V-V attention; their sums per stage of three blocks are compared with the class prompts (prototypes picked by DBSCAN), weighted by the image\'s own class probabilities. Published on ViT-B-16-plus-240 at 240 px.',
    noteKo: 'CLIP-AD SDP: 학습이 필요 없습니다. 모든 블록이 V-V 어텐션을 함께 계산하고, 세 블록 단위 스테이지의 합을 클래스 프롬프트(DBSCAN으로 고른 대표 벡터)와 비교해 이미지 자신의 클래스 확률로 가중합니다. ViT-B-16-plus-240, 240 px에서 발표되었습니다.',
    options: [
      { key: 'rvs', type: 'select', labelEn: 'Prototype', labelKo: '대표 벡터', value: 'dbscan',
        choices: [['dbscan', 'rvs.dbscan'], ['dbscan-visa', 'rvs.dbscan-visa'], ['mean', 'rvs.mean']] },
      { key: 'sigma', type: 'number', labelEn: 'Gaussian σ (0 = none)', labelKo: '가우시안 σ (0 = 없음)', min: 0, max: 32, step: 1, value: 8 },
      { key: 'image_size', type: 'number', labelEn: 'Input size (px)', labelKo: '입력 크기 (px)', min: 8, max: 1024, step: 1, value: '' },
    ],
  },
  {
    id: 'clip-ad-plus',
    checkpoint: true,
    references: 'calibration',
    noteEn: 'CLIP-AD SDP+: the SDP map plus VAND-style linear layers on the original path (trained on an auxiliary dataset). Needs its checkpoint (the released train_on_mvtec.pth / train_on_visa.pth, or the safetensors file vlad train clip-ad writes). The official VisA runs use σ = 2.',
    noteKo: 'CLIP-AD SDP+: SDP 맵에 원래 경로의 VAND식 선형층(보조 데이터셋으로 학습)을 더합니다. 체크포인트(공개된 train_on_mvtec.pth / train_on_visa.pth 또는 vlad train clip-ad가 쓰는 safetensors)가 필요합니다. 공식 VisA 실행은 σ = 2를 씁니다.',
    options: [
      { key: 'rvs', type: 'select', labelEn: 'Prototype', labelKo: '대표 벡터', value: 'dbscan',
        choices: [['dbscan', 'rvs.dbscan'], ['dbscan-visa', 'rvs.dbscan-visa'], ['mean', 'rvs.mean']] },
      { key: 'sigma', type: 'number', labelEn: 'Gaussian σ (0 = none)', labelKo: '가우시안 σ (0 = 없음)', min: 0, max: 32, step: 1, value: 8 },
      { key: 'image_size', type: 'number', labelEn: 'Input size (px)', labelKo: '입력 크기 (px)', min: 8, max: 1024, step: 1, value: '' },
    ],
  },
  {
    id: 'anomaly-clip',
    checkpoint: true,
    references: 'calibration',
    noteEn: 'AnomalyCLIP (ICLR 2024): learned object-agnostic prompts ("X X … X object." / "X X … X damaged object.", with learned vectors written into text blocks 2–9) against DPAM patch features (V-V attention from block 6 on). Class-agnostic. Needs its checkpoint (a released epoch_15.pth, or the safetensors file vlad train anomaly-clip writes).',
    noteKo: 'AnomalyCLIP (ICLR 2024): 객체 무관 학습 프롬프트("X X … X object." / "X X … X damaged object.", 텍스트 블록 2–9에 학습 벡터를 덮어씀)를 DPAM 패치 특징(블록 6부터 V-V 어텐션)과 비교합니다. 클래스와 무관합니다. 체크포인트(공개된 epoch_15.pth 또는 vlad train anomaly-clip이 쓰는 safetensors)가 필요합니다.',
    options: [
      { key: 'sigma', type: 'number', labelEn: 'Gaussian σ (0 = none)', labelKo: '가우시안 σ (0 = 없음)', min: 0, max: 32, step: 1, value: 4 },
      { key: 'image_size', type: 'number', labelEn: 'Input size (px)', labelKo: '입력 크기 (px)', min: 8, max: 1024, step: 1, value: '' },
    ],
  },
  {
    id: 'ada-clip',
    checkpoint: true,
    references: 'calibration',
    noteEn: 'AdaCLIP (ECCV 2024): hybrid prompts on both towers — learned static prompts plus dynamic ones made from each image (5 tokens appended to the image sequence in blocks 1–4, text rows 1–5 overwritten in blocks 2–4) — and HSF, which clusters the 100 most anomalous patches with k-means (seeded as the official single-image run) into the image score. Needs its checkpoint (a released pretrained_*.pth, or the safetensors file vlad train ada-clip writes).',
    noteKo: 'AdaCLIP (ECCV 2024): 두 인코더 모두에 하이브리드 프롬프트 — 학습된 정적 프롬프트와 각 이미지에서 만든 동적 프롬프트(블록 1–4에서 이미지 시퀀스에 5개 토큰을 덧붙이고, 블록 2–4에서 텍스트 1–5번 행을 덮어씀) — 와, 가장 이상한 패치 100개를 k-평균(공식 단일 이미지 실행처럼 시드 고정)으로 묶어 이미지 점수를 만드는 HSF를 씁니다. 체크포인트(공개된 pretrained_*.pth 또는 vlad train ada-clip이 쓰는 safetensors)가 필요합니다.',
    options: [
      { key: 'sigma', type: 'number', labelEn: 'Gaussian σ (0 = none)', labelKo: '가우시안 σ (0 = 없음)', min: 0, max: 32, step: 1, value: 4 },
      { key: 'no_hsf', type: 'select', labelEn: 'Image score', labelKo: '이미지 점수', value: 'false',
        choices: [['false', 'adaclip.hsf'], ['true', 'adaclip.cls']] },
      { key: 'image_size', type: 'number', labelEn: 'Input size (px)', labelKo: '입력 크기 (px)', min: 8, max: 1024, step: 1, value: '' },
    ],
  },
];

/** Detector names the loaded engine implements. */
export function supportedDetectors(EngineClass) {
  if (EngineClass && typeof EngineClass.detectors === 'function') {
    const listed = EngineClass.detectors();
    return new Set(typeof listed === 'string' ? JSON.parse(listed) : Array.from(listed));
  }
  return new Set(['zero-shot']);
}

/** Options JSON for the engine from the current control values (`''` = leave to the engine). */
export function optionsJson(detector, values) {
  const out = {};
  for (const opt of detector.options) {
    const raw = values[opt.key];
    if (raw === '' || raw === undefined || raw === null) continue;
    out[opt.key] = opt.type === 'select' ? raw : Number(raw);
  }
  return JSON.stringify(out);
}
