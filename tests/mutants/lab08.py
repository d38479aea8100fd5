"""Plausible wrong answers to lab 08 (the three architectures, parameter counting)."""

from tests.mutants import Mutant

NOTEBOOK = "solutions/08-architectures/lab08-architectures.ipynb"
MAX_SCORE = 15
SETUP = ["setup", "count_helper"]

# grade_id of a solution cell → (check piece, the name the cell defines)
PIECES = {
    "decoder_block": ("08.decoder_block", "DecoderBlock"),
    "encoder_only": ("08.encoder_only", "EncoderOnly"),
    "decoder_only": ("08.decoder_only", "DecoderOnly"),
    "encoder_decoder": ("08.encoder_decoder", "EncoderDecoder"),
    "parameter_breakdown": ("08.parameter_breakdown", "parameter_breakdown"),
    "chatglm": ("08.chatglm", "chatglm_6b_parameters"),
}

MUTANTS = [
    # DecoderBlock
    Mutant("cross-attention reads the decoder instead of the encoder", "decoder_block",
           "self.cross_attn(h, context=memory, mask=memory_mask)", "self.cross_attn(h)", "read the decoder's own"),
    Mutant("decoder self-attention not causal", "decoder_block",
           "self.attn(h, is_causal=True)", "self.attn(h)", "not causal"),
    Mutant("memory_mask ignored", "decoder_block",
           "context=memory, mask=memory_mask)", "context=memory)", "memory_mask was not passed"),
    Mutant("cross-attention inside norm1", "decoder_block",
           "self.residual(x, self.norm_cross,", "self.residual(x, self.norm1,", "norm_cross"),
    Mutant("cross-attention sub-layer left out", "decoder_block",
           "x = self.residual(x, self.norm_cross, lambda h: self.cross_attn(h, context=memory, mask=memory_mask)[0])",
           "pass", "cross-attention sub-layer is missing"),
    # EncoderOnly
    Mutant("encoder without its final norm", "encoder_only",
           "            h = block(h, mask=mask)\n        return self.final_norm(h)",
           "            h = block(h, mask=mask)\n        return h", "final norm is missing"),
    Mutant("encoder with a causal mask", "encoder_only",
           "h = block(h, mask=mask)", "h = block(h, mask=mask, is_causal=True)", "encoder is bidirectional"),
    Mutant("encoder ignores the padding mask", "encoder_only",
           "h = block(h, mask=mask)", "h = block(h)", "padding mask was not passed"),
    # DecoderOnly
    Mutant("GPT without the causal mask", "decoder_only",
           "h = block(h, is_causal=True)", "h = block(h)", "without a causal mask"),
    Mutant("GPT without the final norm", "decoder_only",
           "return self.logits(h)", "return self.lm_head(h)", "final norm is missing"),
    Mutant("GPT without position embeddings", "decoder_only",
           "h = self.embed(ids)", "h = self.tok_emb(ids)", "position embedding is missing"),
    # EncoderDecoder
    Mutant("decoder reads the source embeddings", "encoder_decoder",
           "return self.decode(tgt, self.encode(src, src_mask), src_mask)",
           "return self.decode(tgt, self.embed(src), src_mask)", "source embeddings instead"),
    Mutant("cross-attention ignores source padding", "encoder_decoder",
           "h = block(h, memory, memory_mask=keys)", "h = block(h, memory)", "cross-attention (memory_mask)"),
    Mutant("encoder ignores source padding", "encoder_decoder",
           "h = block(h, mask=keys)", "h = block(h)", "encoder's self-attention"),
    Mutant("no encoder_norm", "encoder_decoder",
           "return self.encoder_norm(h)", "return h", "encoder_norm"),
    # parameter_breakdown
    Mutant("count forgets the attention biases", "parameter_breakdown",
           "(4 * d * d + 4 * b * d)", "(4 * d * d)", "attention biases are missing"),
    Mutant("count forgets the final norm", "parameter_breakdown",
           "(2 * blocks + cross + (stacks if c.prenorm else 0)) * norm", "(2 * blocks + cross) * norm",
           "final norm"),
    Mutant("count forgets the position table", "parameter_breakdown",
           '"positions": c.max_len * d if positions == "learned" else 0', '"positions": 0',
           "position table"),
    Mutant("count counts tied weights twice", "parameter_breakdown",
           '"output layer": 0 if c.tie_weights else V * d', '"output layer": V * d', "count it once"),
    Mutant("count forgets cross-attention", "parameter_breakdown",
           '"attention": (blocks + cross) *', '"attention": blocks *', "cross-attention"),
    Mutant("count gives LayerNorm no bias", "parameter_breakdown",
           "norm = (1 + b) * d if", "norm = d if", "LayerNorm biases"),
    Mutant("count ignores the given d_ff", "parameter_breakdown",
           "f = c.d_ff or (", "f = (", "d_ff was taken as 4·d_model"),
    # ChatGLM-6B
    Mutant("ChatGLM with a learned position table", "chatglm",
           'positions="rotary"', 'positions="learned"', "rotary positions"),
    Mutant("ChatGLM with a separate output matrix", "chatglm",
           "d_ff=16384)", "d_ff=16384, tie_weights=False)", "shares it with the word embedding"),
    Mutant("ChatGLM without biases", "chatglm", "bias=True)", "bias=False)", "have biases"),
]
