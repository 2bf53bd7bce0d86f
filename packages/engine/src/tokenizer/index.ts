/**
 * Tokenizer wrapper over `@huggingface/tokenizers` (encode/decode) and `@huggingface/jinja` (chat templates),
 * loading a Hugging Face model folder.
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { Template } from '@huggingface/jinja';
import type { ChatMessage } from './chat.js';

export type { ChatMessage } from './chat.js';
export { DEFAULT_CHAT_TEMPLATE, renderPlainChat } from './chat.js';
export { GPT2_SPLIT_PATTERN, BYTE_TO_CHAR, CHAR_TO_BYTE, toByteLevel } from './byte-level.js';
export {
  LLAMA3_SPLIT_PATTERN,
  QWEN2_SPLIT_PATTERN,
  bosTemplateProcessing,
  byteLevelWords,
  learnBpeMerges,
  tokenizerConfigFor,
  trainByteLevelBpe,
} from './bpe-trainer.js';
export type { AddedToken, BpeTrainOptions, ByteLevelFamily, MergeOptions, TokenizerConfigOptions, TokenizerJson } from './bpe-trainer.js';
export { SPIECE_UNDERLINE, byteFallbackToken, trainSentencePieceBpe } from './sentencepiece-bpe.js';
export type { SentencePieceBpeOptions, SentencePieceForm } from './sentencepiece-bpe.js';
export { fillerToken, layoutVocabulary } from './vocab-layout.js';
export type { PlacedToken } from './vocab-layout.js';
export * from './templates.js';

/** Why a tokenizer could not be loaded or used. */
export type TokenizerErrorCode = 'not_found' | 'invalid_json' | 'invalid_tokenizer' | 'no_chat_template' | 'invalid_chat_template';

/** Error from loading a tokenizer folder or rendering a chat template; `code` says which case. */
export class TokenizerError extends Error {
  readonly code: TokenizerErrorCode;
  constructor(code: TokenizerErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TokenizerError';
    this.code = code;
  }
}

/** The tokenizer interface the engine uses. All ids are vocabulary indices (0 <= id < vocabSize). */
export interface EngineTokenizer {
  /**
   * Text -> token ids. With `addSpecialTokens` (default true) the model's own special prefix/suffix is added
   * (for LLaMA-style tokenizers: bos in front; see `addBos`). Special-token strings in `text` become their id.
   */
  encode(text: string, opts?: { addSpecialTokens?: boolean }): number[];
  /**
   * Token ids -> text; `[]` gives `''`. `skipSpecialTokens` (default false) drops special tokens.
   * No tokenization-space clean-up unless the tokenizer_config asks for it, so decode(encode(s, no specials)) === s
   * for byte-level tokenizers.
   * @throws RangeError for an id that is not an integer in [0, vocabSize).
   */
  decode(ids: readonly number[], opts?: { skipSpecialTokens?: boolean }): string;
  /** Id of a token string (vocabulary entry, not text), or null. */
  tokenToId(token: string): number | null;
  /** Token string of an id, or null. */
  idToToken(id: number): string | null;
  /** Number of embedding rows the tokenizer needs: highest id + 1 (special tokens included). */
  readonly vocabSize: number;
  readonly bosId: number | null;
  readonly eosId: number | null;
  readonly padId: number | null;
  readonly unkId: number | null;
  readonly bosToken: string | null;
  readonly eosToken: string | null;
  readonly padToken: string | null;
  /** Whether `encode(text)` with special tokens puts bos in front (tokenizer_config `add_bos_token`, else observed). */
  readonly addBos: boolean;
  /** Ids of all special tokens. */
  readonly specialIds: ReadonlySet<number>;
  /** Jinja chat template text, or null when the tokenizer has none. */
  readonly chatTemplate: string | null;
  /** Longest input in tokens from tokenizer_config `model_max_length`, or null when absent/unbounded. */
  readonly modelMaxLength: number | null;
  /**
   * Renders `messages` with the chat template (`messages`, `add_generation_prompt`, `bos_token`, `eos_token`,
   * `pad_token`, `unk_token` are passed to it). Returns text; encode it with `addSpecialTokens: false` since
   * templates carry their own bos.
   * @throws TokenizerError `no_chat_template` when there is no template, `invalid_chat_template` when it fails.
   */
  applyChatTemplate(messages: readonly ChatMessage[], opts?: { addGenerationPrompt?: boolean }): string;
}

type Json = Record<string, unknown>;

/**
 * The part of `@huggingface/tokenizers`' Tokenizer we use, typed here because its bundled .d.ts files use
 * extension-less imports that `moduleResolution: nodenext` cannot follow (the class would be `any`).
 */
interface HfTokenizer {
  encode(text: string, opts: { add_special_tokens: boolean }): { ids: number[] };
  decode(ids: number[], opts: { skip_special_tokens: boolean; clean_up_tokenization_spaces: boolean }): string;
  token_to_id(token: string): number | undefined;
  id_to_token(id: number): string | undefined;
}

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A special token field of tokenizer_config: a string or an AddedToken object `{content: ...}`. */
function tokenString(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (isObject(v) && typeof v.content === 'string') return v.content;
  return null;
}

/** Highest id + 1 over the model vocab (object or Unigram array) and the added tokens. */
function countVocab(tokenizerJson: Json): number {
  let max = -1;
  const model = tokenizerJson.model;
  if (isObject(model)) {
    const vocab = model.vocab;
    if (Array.isArray(vocab)) max = vocab.length - 1;
    else if (isObject(vocab)) for (const v of Object.values(vocab)) if (typeof v === 'number' && v > max) max = v;
  }
  const added = tokenizerJson.added_tokens;
  if (Array.isArray(added)) for (const t of added) if (isObject(t) && typeof t.id === 'number' && t.id > max) max = t.id;
  return max + 1;
}

function pickChatTemplate(v: unknown): string | null {
  if (typeof v === 'string') return v;
  // Some configs hold several named templates: [{name, template}, ...]; take "default", else the first.
  if (Array.isArray(v)) {
    const named = v.filter((t): t is { name: unknown; template: string } => isObject(t) && typeof t.template === 'string');
    return (named.find((t) => t.name === 'default') ?? named[0])?.template ?? null;
  }
  return null;
}

/** Where the special tokens of `encode(text)` go relative to the plain ids, found once by encoding a probe. */
interface SpecialFrame {
  prefix: number[];
  suffix: number[];
}

/**
 * Wraps an already-parsed `tokenizer.json` (+ optional `tokenizer_config.json` and model `config.json`).
 * Special ids come from tokenizer_config (`bos_token`...), else from the model config (`bos_token_id`...),
 * else from well-known special token names.
 * @throws TokenizerError `invalid_tokenizer` when `@huggingface/tokenizers` rejects the JSON.
 */
export function tokenizerFromJson(tokenizerJson: object, tokenizerConfig: object = {}, modelConfig: object = {}): EngineTokenizer {
  const tj = tokenizerJson as Json;
  const cfg = tokenizerConfig as Json;
  const mcfg = modelConfig as Json;
  if (!isObject(tj) || !isObject(tj.model)) {
    throw new TokenizerError('invalid_tokenizer', 'tokenizer.json has no "model" object');
  }
  // The library wants plain strings for special-token fields, and falls back to a legacy model for WordLevel
  // vocabularies that needs unk_token from the config.
  const libCfg: Json = { ...cfg };
  for (const k of ['bos_token', 'eos_token', 'pad_token', 'unk_token']) {
    const s = tokenString(cfg[k]);
    if (s !== null) libCfg[k] = s;
    else delete libCfg[k];
  }
  if (libCfg.unk_token === undefined && typeof tj.model.unk_token === 'string') libCfg.unk_token = tj.model.unk_token;
  let lib: HfTokenizer;
  try {
    lib = new Tokenizer(tj, libCfg) as HfTokenizer;
  } catch (err) {
    throw new TokenizerError('invalid_tokenizer', `unsupported or invalid tokenizer.json: ${(err as Error).message}`, { cause: err });
  }

  const vocabSize = countVocab(tj);
  const idOf = (token: string | null): number | null => {
    if (token === null) return null;
    const id = lib.token_to_id(token);
    return id === undefined ? null : id;
  };
  const specialIds = new Set<number>();
  const specialNames = new Set<string>();
  if (Array.isArray(tj.added_tokens)) {
    for (const t of tj.added_tokens) {
      if (isObject(t) && t.special === true && typeof t.id === 'number' && typeof t.content === 'string') {
        specialIds.add(t.id);
        specialNames.add(t.content);
      }
    }
  }

  const resolve = (field: string, guesses: string[]): { token: string | null; id: number | null } => {
    const fromCfg = tokenString(cfg[field]);
    if (fromCfg !== null) return { token: fromCfg, id: idOf(fromCfg) };
    let cid = mcfg[`${field}_id`];
    if (Array.isArray(cid)) cid = cid[0]; // e.g. LLaMA 3 lists several eos ids
    if (typeof cid === 'number' && Number.isInteger(cid) && cid >= 0 && cid < vocabSize) {
      return { token: lib.id_to_token(cid) ?? null, id: cid };
    }
    for (const g of guesses) {
      if (specialNames.has(g)) return { token: g, id: idOf(g) };
    }
    return { token: null, id: null };
  };
  const bos = resolve('bos_token', ['<s>', '<|begin_of_text|>', '<bos>', '<|startoftext|>']);
  const eos = resolve('eos_token', ['</s>', '<|end_of_text|>', '<|endoftext|>', '<eos>']);
  const pad = resolve('pad_token', ['<pad>', '<|pad|>', '[PAD]', '<|finetune_right_pad_id|>']);
  const unk = resolve('unk_token', ['<unk>', '[UNK]', '<|unk|>']);

  // Learn the special prefix/suffix `encode` adds (TemplateProcessing etc.) once, then honour
  // tokenizer_config add_bos_token / add_eos_token the way HF's fast LLaMA tokenizer does.
  const frame: SpecialFrame | null = (() => {
    const probe = 'a';
    const plain = lib.encode(probe, { add_special_tokens: false }).ids;
    const full = lib.encode(probe, { add_special_tokens: true }).ids;
    for (let p = 0; p + plain.length <= full.length; p++) {
      if (plain.every((id, i) => full[p + i] === id)) {
        return { prefix: full.slice(0, p), suffix: full.slice(p + plain.length) };
      }
    }
    return null;
  })();
  if (frame) {
    if (cfg.add_bos_token === true && bos.id !== null && frame.prefix[0] !== bos.id) frame.prefix.unshift(bos.id);
    if (cfg.add_bos_token === false && bos.id !== null && frame.prefix[0] === bos.id) frame.prefix.shift();
    const last = frame.suffix.length - 1;
    if (cfg.add_eos_token === true && eos.id !== null && frame.suffix[last] !== eos.id) frame.suffix.push(eos.id);
    if (cfg.add_eos_token === false && eos.id !== null && frame.suffix[last] === eos.id) frame.suffix.pop();
  }
  const addBos = bos.id !== null && frame !== null && frame.prefix[0] === bos.id;

  const chatTemplate = pickChatTemplate(cfg.chat_template);
  let compiled: Template | null = null;
  const cleanUp = cfg.clean_up_tokenization_spaces === true;
  const maxLen = cfg.model_max_length;
  // HF writes a huge sentinel (1e30) for "no limit".
  const modelMaxLength = typeof maxLen === 'number' && Number.isFinite(maxLen) && maxLen > 0 && maxLen < 1e12 ? maxLen : null;

  return {
    vocabSize,
    bosId: bos.id,
    eosId: eos.id,
    padId: pad.id,
    unkId: unk.id,
    bosToken: bos.token,
    eosToken: eos.token,
    padToken: pad.token,
    addBos,
    specialIds,
    chatTemplate,
    modelMaxLength,
    encode(text, opts = {}) {
      if (opts.addSpecialTokens === false) return lib.encode(text, { add_special_tokens: false }).ids;
      if (!frame) return lib.encode(text, { add_special_tokens: true }).ids;
      const ids = lib.encode(text, { add_special_tokens: false }).ids;
      return frame.prefix.length || frame.suffix.length ? [...frame.prefix, ...ids, ...frame.suffix] : ids;
    },
    decode(ids, opts = {}) {
      if (ids.length === 0) return '';
      for (const id of ids) {
        if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
          throw new RangeError(`token id ${id} is outside the vocabulary [0, ${vocabSize})`);
        }
      }
      return lib.decode([...ids], {
        skip_special_tokens: opts.skipSpecialTokens ?? false,
        clean_up_tokenization_spaces: cleanUp,
      });
    },
    tokenToId: idOf,
    idToToken(id: number) {
      return lib.id_to_token(id) ?? null;
    },
    applyChatTemplate(messages, opts = {}) {
      if (chatTemplate === null) {
        throw new TokenizerError('no_chat_template', 'this tokenizer has no chat_template (tokenizer_config.json or chat_template.jinja)');
      }
      try {
        compiled ??= new Template(chatTemplate);
        return compiled.render({
          messages: messages.map((m) => ({ role: m.role, content: m.content })),
          add_generation_prompt: opts.addGenerationPrompt ?? false,
          bos_token: bos.token ?? '',
          eos_token: eos.token ?? '',
          pad_token: pad.token ?? '',
          unk_token: unk.token ?? '',
        });
      } catch (err) {
        throw new TokenizerError('invalid_chat_template', `chat template failed: ${(err as Error).message}`, { cause: err });
      }
    },
  };
}

async function readJsonFile(path: string, required: boolean): Promise<Json | null> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      if (!required) return null;
      throw new TokenizerError('not_found', `${path} not found`, { cause: err });
    }
    throw err;
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new TokenizerError('invalid_json', `${path} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  if (!isObject(value)) throw new TokenizerError('invalid_json', `${path} must hold a JSON object`);
  return value;
}

/**
 * Loads the tokenizer of a Hugging Face model folder: `tokenizer.json` (required), `tokenizer_config.json`,
 * `config.json` (for `*_token_id` fallbacks) and a standalone `chat_template.jinja` / `chat_template.json`
 * when tokenizer_config has no `chat_template`.
 * @throws TokenizerError `not_found` (folder or tokenizer.json missing), `invalid_json`, `invalid_tokenizer`.
 */
export async function loadTokenizer(dir: string): Promise<EngineTokenizer> {
  try {
    if (!(await stat(dir)).isDirectory()) throw new TokenizerError('not_found', `${dir} is not a directory`);
  } catch (err) {
    if (err instanceof TokenizerError) throw err;
    throw new TokenizerError('not_found', `model folder ${dir} not found`, { cause: err });
  }
  const tokenizerJson = (await readJsonFile(join(dir, 'tokenizer.json'), true))!;
  const tokenizerConfig = (await readJsonFile(join(dir, 'tokenizer_config.json'), false)) ?? {};
  const modelConfig = (await readJsonFile(join(dir, 'config.json'), false)) ?? {};
  if (tokenizerConfig.chat_template === undefined) {
    try {
      tokenizerConfig.chat_template = await readFile(join(dir, 'chat_template.jinja'), 'utf8');
    } catch {
      const ct = await readJsonFile(join(dir, 'chat_template.json'), false);
      if (ct && ct.chat_template !== undefined) tokenizerConfig.chat_template = ct.chat_template;
    }
  }
  try {
    return tokenizerFromJson(tokenizerJson, tokenizerConfig, modelConfig);
  } catch (err) {
    if (err instanceof TokenizerError) throw new TokenizerError(err.code, `${join(dir, 'tokenizer.json')}: ${err.message}`, { cause: err });
    throw err;
  }
}
