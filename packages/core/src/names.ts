/**
 * Names and sentinels every layer of edgetune agrees on, spelled as Hugging Face and PyTorch spell them.
 */

/**
 * The linear modules of one LLaMA-family decoder layer, by their HF short names (`modeling_llama.py`:
 * `self_attn.{q,k,v,o}_proj`, `mlp.{gate,up,down}_proj`). These are also the PEFT `target_modules` LoRA
 * can wrap.
 */
export const LINEAR_NAMES = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;

/** One of {@link LINEAR_NAMES}. */
export type LinearName = (typeof LINEAR_NAMES)[number];

/** Label of a position that carries no loss (PyTorch `F.cross_entropy(ignore_index=-100)`, HF convention). */
export const IGNORE_INDEX = -100;
