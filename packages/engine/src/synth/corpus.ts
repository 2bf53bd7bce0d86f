/**
 * A small English text the synthetic tokenizers are trained on, written for this project. It only has to give
 * the merges a realistic shape (common words, digits, punctuation, line breaks); the weights are random anyway.
 */
export const SYNTH_CORPUS = `The model you are reading about was made for testing. Its weights are random numbers, drawn from a normal
distribution with a small standard deviation, so it cannot answer questions, write stories or translate text.
What it can do is take exactly as much memory and time as the real model of the same shape, which is what a
benchmark needs: the number of layers, the width of each layer, the size of the vocabulary and the way the
tokenizer cuts text into pieces are the same as in the model it imitates.

A language model reads text as a sequence of tokens. A token is a word, a piece of a word, a number, a space
or a punctuation mark. The tokenizer learns which pieces to use from a corpus: it starts from single characters
or single bytes, counts which pairs of neighbours appear most often, and merges the most frequent pair into a
new piece. It repeats this until the vocabulary has the size it wants. Frequent words such as "the", "and",
"of" and "to" become single tokens early; rare words stay split into several pieces.

Each token id selects one row of the embedding matrix. The rows go through the decoder layers: attention lets
every position look at the positions before it, and the feed-forward network transforms each position on its
own. After the last layer a normalisation and the output projection turn the hidden state into one score per
token of the vocabulary. The next token is chosen from these scores, appended to the text, and the model runs
again. A model with 16 layers and a hidden size of 2048 does this with about 1,235,814,400 parameters; one
with 28 layers and a hidden size of 3072 needs about 3,212,749,824.

Numbers appear in many forms: 1, 2, 3, 10, 42, 100, 2024, 3.14159, 0.02, 1e-5, 65536 and 128256. Dates such as
2024-07-26 or 26 Jul 2024, times such as 10:30, prices such as $19.99 and percentages such as 87.5% are common
too. Code has its own habits: functions like encode(text) and decode(ids), lists like [1, 2, 3], objects like
{"name": "value"}, and lines that end with a semicolon;

Questions and answers follow a pattern. Someone asks: "What is the capital of France?" The assistant answers:
"The capital of France is Paris." Someone asks: "How many days are there in a week?" The answer is seven. A
polite conversation says hello, thank you and goodbye. It doesn't shout, and it isn't rude; it's friendly,
we're told, and they'll remember it. I'm sure you've seen this before, and I'd say it's fine.

Training a model changes its weights a little at every step, in the direction that makes the right next token
more likely. Fine-tuning starts from a trained model and continues on a smaller set of examples. Low-rank
adapters add two thin matrices next to each projection and train only those, which keeps the memory small.
Early exits attach extra output heads to the middle layers, so that a prediction can be made before the last
layer when the model is already confident. Quantisation stores the weights with fewer bits; pruning removes the
weights that matter least.
`;
