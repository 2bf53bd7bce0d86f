/** Chat messages and our default chat format. */

/** One chat turn, OpenAI / HF style. */
export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/**
 * Default Jinja chat template for tokenizers we train (see `tokenizerConfigFor`). Renders
 * `{bos}<|role|>\ncontent\n` per turn, with eos right after the content of assistant turns, and
 * `<|assistant|>\n` as the generation prompt. Newlines are written as `'\n'` literals because HF renders
 * templates with trim_blocks (a newline after a block tag would vanish).
 */
export const DEFAULT_CHAT_TEMPLATE =
  "{{ bos_token }}{% for message in messages %}{{ '<|' + message['role'] + '|>\\n' + message['content'] }}" +
  "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}{{ '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}";

/**
 * The text {@link DEFAULT_CHAT_TEMPLATE} renders, without the leading bos: used for tokenizers that carry no
 * chat template, where bos (if any) is added as an id rather than as text.
 */
export function renderPlainChat(
  messages: readonly ChatMessage[],
  opts: { addGenerationPrompt?: boolean; eosToken?: string | null } = {},
): string {
  let out = '';
  for (const m of messages) {
    out += `<|${m.role}|>\n${m.content}`;
    if (m.role === 'assistant' && opts.eosToken) out += opts.eosToken;
    out += '\n';
  }
  if (opts.addGenerationPrompt) out += '<|assistant|>\n';
  return out;
}
