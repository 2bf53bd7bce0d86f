/**
 * Chat templates of real model families, as data (the `chat_template` field of their `tokenizer_config.json`),
 * for tokenizers built to look like theirs. Rendered with `@huggingface/jinja`, which trims blocks as
 * transformers does (`trim_blocks`, `lstrip_blocks`).
 */

/**
 * Llama 3.2 Instruct (meta-llama/Llama-3.2-1B-Instruct) without its tool-calling branches: a system header with
 * the knowledge-cutoff and date lines always comes first, then `<|start_header_id|>role<|end_header_id|>\n\n`
 * + trimmed content + `<|eot_id|>` per turn.
 */
export const LLAMA3_2_CHAT_TEMPLATE = [
  '{{- bos_token }}',
  '{%- if not date_string is defined %}',
  '    {%- set date_string = "26 Jul 2024" %}',
  '{%- endif %}',
  "{%- if messages[0]['role'] == 'system' %}",
  "    {%- set system_message = messages[0]['content']|trim %}",
  '    {%- set messages = messages[1:] %}',
  '{%- else %}',
  '    {%- set system_message = "" %}',
  '{%- endif %}',
  '{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}',
  '{{- "Cutting Knowledge Date: December 2023\\n" }}',
  '{{- "Today Date: " + date_string + "\\n\\n" }}',
  '{{- system_message }}',
  '{{- "<|eot_id|>" }}',
  '{%- for message in messages %}',
  "    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}",
  '{%- endfor %}',
  '{%- if add_generation_prompt %}',
  "    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}",
  '{%- endif %}',
  '',
].join('\n');

/** Llama 3 / 3.1 style without the system preamble (meta-llama/Meta-Llama-3-8B-Instruct). */
export const LLAMA3_CHAT_TEMPLATE =
  "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + " +
  "'<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}" +
  "{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

/** ChatML of Qwen2.5 Instruct (Qwen/Qwen2.5-0.5B-Instruct) without its tool-calling branches; default system prompt. */
export const QWEN2_5_CHAT_TEMPLATE = [
  "{%- if messages[0]['role'] == 'system' %}",
  "    {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}",
  '{%- else %}',
  "    {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}",
  '{%- endif %}',
  '{%- for message in messages %}',
  '    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant") %}',
  "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}",
  '    {%- endif %}',
  '{%- endfor %}',
  '{%- if add_generation_prompt %}',
  "    {{- '<|im_start|>assistant\\n' }}",
  '{%- endif %}',
  '',
].join('\n');

/** ChatML of SmolLM2 Instruct (HuggingFaceTB/SmolLM2-135M-Instruct), with its default system prompt. */
export const SMOLLM2_CHAT_TEMPLATE =
  "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI " +
  "assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] " +
  "+ '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/** Zephyr style of TinyLlama/TinyLlama-1.1B-Chat-v1.0: `<|user|>\n` + content + eos, one turn per line. */
export const TINYLLAMA_CHAT_TEMPLATE =
  "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n" +
  "{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n" +
  "{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n" +
  "{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}";

/** Llama 2 chat (meta-llama/Llama-2-7b-chat-hf): `<s>[INST] <<SYS>>...<</SYS>> user [/INST] answer </s>`. */
export const LLAMA2_CHAT_TEMPLATE =
  "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}" +
  '{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}' +
  "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate " +
  "user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = " +
  "'<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}" +
  "{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}" +
  "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

/** Mistral Instruct v0.1/v0.2 (mistralai/Mistral-7B-Instruct-v0.2): `<s>[INST] user [/INST]answer</s>`, no system role. */
export const MISTRAL_CHAT_TEMPLATE =
  "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}" +
  "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}" +
  "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}" +
  "{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";

/** The templates above by family name. */
export const CHAT_TEMPLATES = {
  'llama-3.2': LLAMA3_2_CHAT_TEMPLATE,
  'llama-3': LLAMA3_CHAT_TEMPLATE,
  'qwen2.5': QWEN2_5_CHAT_TEMPLATE,
  smollm2: SMOLLM2_CHAT_TEMPLATE,
  tinyllama: TINYLLAMA_CHAT_TEMPLATE,
  'llama-2': LLAMA2_CHAT_TEMPLATE,
  mistral: MISTRAL_CHAT_TEMPLATE,
} as const;

/** A name of {@link CHAT_TEMPLATES}. */
export type ChatTemplateFamily = keyof typeof CHAT_TEMPLATES;
