"""What the ONNX conformance run skips, tolerates and knows to fail: data, read by conformance.py.

Every entry says why. A skip is for a case no TF.js model could run (its op has no TF.js kernel, or
its types do not exist in TF.js, or it is random / training-only), never for an op the lowering
merely lacks: those count as unsupported, against the verified share.
"""

from __future__ import annotations

_STRING = "string tensors: TF.js graph models have no string kernels for this"
_TRAINING = "training-only op: inference graphs do not carry it"
_RANDOM = "random draws: no expected output to compare with"
_SEQUENCE = "sequence / optional / map values: TF.js graph models have no such types"
DOMAIN_REASON = "a non-default domain (ai.onnx.ml / training): not an ONNX operator set the lowering targets"

#: op type -> why a case that uses it is skipped
SKIP_OPS: dict[str, str] = {
    "StringConcat": _STRING, "StringNormalizer": _STRING, "StringSplit": _STRING, "RegexFullMatch": _STRING,
    "TfIdfVectorizer": "n-gram counting over a pool of strings/ints: no TF.js kernel",
    "ImageDecoder": "decodes encoded image bytes (a uint8 string): no TF.js kernel in a graph model",
    "Adagrad": _TRAINING, "Adam": _TRAINING, "Momentum": _TRAINING,
    "NegativeLogLikelihoodLoss": _TRAINING + " (a loss; the _expanded cases test its parts)",
    "SoftmaxCrossEntropyLoss": _TRAINING + " (a loss; the _expanded cases test its parts)",
    "Bernoulli": _RANDOM, "RandomUniformLike": _RANDOM, "RandomNormalLike": _RANDOM, "RandomUniform": _RANDOM,
    "RandomNormal": _RANDOM, "Multinomial": _RANDOM,
    "SequenceEmpty": _SEQUENCE, "SequenceInsert": _SEQUENCE, "SequenceLength": _SEQUENCE,
    "SequenceMap": _SEQUENCE, "SequenceAt": _SEQUENCE, "SequenceConstruct": _SEQUENCE,
    "SequenceErase": _SEQUENCE, "SplitToSequence": _SEQUENCE, "ConcatFromSequence": _SEQUENCE,
    "OptionalGetElement": _SEQUENCE, "OptionalHasElement": _SEQUENCE, "Optional": _SEQUENCE,
}

#: a case name (prefix) -> why it is skipped although its ops are lowered
SKIP_CASES: dict[str, str] = {
    "test_training_dropout": "Dropout in training mode draws random masks: " + _RANDOM,
}

#: ONNX element types -> why a case holding them anywhere (inputs, outputs, initializers) is skipped
SKIP_TYPES: dict[int, str] = {
    8: "string tensors: no TF.js graph-model support",
    14: "complex64: not a TF.js graph-model input type", 15: "complex128: not a TF.js type",
    16: "bfloat16: not a TF.js type",
    17: "float8: not a TF.js type", 18: "float8: not a TF.js type", 19: "float8: not a TF.js type",
    20: "float8: not a TF.js type", 21: "uint4: not a TF.js type", 22: "int4: not a TF.js type",
    23: "float4: not a TF.js type", 24: "float8e8m0: not a TF.js type", 25: "uint2: not a TF.js type",
    26: "int2: not a TF.js type",
}

#: (rtol, atol) for float outputs, as ONNX's backend tests compare (numpy.testing.assert_allclose)
TOLERANCE = (1e-3, 1e-7)
#: float16 outputs: one fp16 step is ~1e-3 of the value, and TensorFlow accumulates fp16 products in
#: another order than onnx's reference: up to two steps
FLOAT16_TOLERANCE = (2e-3, 1e-3)
#: float outputs near zero after a long float reduction differ by summation order between CPUs
#: (TensorFlow's Eigen kernels vs onnx's numpy reference): an absolute floor for those
ATOL_FLOOR = 1e-5

#: case -> why its outputs are known to be wrong. Small, commented, and the test asserts it does not
#: grow: a new wrong case is a test failure.
KNOWN_WRONG: dict[str, str] = {
    # ONNX's reference wraps an int8 result that overflows (numpy astype); onnxruntime saturates to
    # -128/127, as the lowering does (checked: onnxruntime 1.23 gives exactly the lowering's values)
    "test_qlinearmatmul_2D_int8_float16": "expected data wrap int8 overflow; onnxruntime and the lowering saturate",
    "test_qlinearmatmul_2D_int8_float32": "expected data wrap int8 overflow; onnxruntime and the lowering saturate",
    "test_qlinearmatmul_3D_int8_float16": "expected data wrap int8 overflow; onnxruntime and the lowering saturate",
    "test_qlinearmatmul_3D_int8_float32": "expected data wrap int8 overflow; onnxruntime and the lowering saturate",
}

#: the fixed sample run through TF.js (wasm and cpu) by test_lower_conformance_tfjs.py: one case per
#: op across the lowering's families (CNN, RNN, transformer, shape, elementwise, reductions, index
#: and post-processing ops), node and pytorch-converted, static and run-time attribute inputs
TFJS_SAMPLE: tuple[str, ...] = (
    # integer division (TF.js has no TruncateDiv/TruncateMod) and Hardmax (TF.js's OneHot and bool Cast)
    "test_div_int8", "test_mod_mixed_sign_int32", "test_hardmax_axis_1",
    # reductions, index and post-processing ops
    "test_reduce_sum_keepdims_random", "test_reduce_mean_keepdims_example", "test_reduce_max_empty_set",
    "test_reduce_min_do_not_keepdims_random", "test_reduce_prod_default_axes_keepdims_random",
    "test_reduce_l1_keep_dims_random", "test_reduce_l2_negative_axes_keep_dims_random",
    "test_reduce_log_sum_desc_axes", "test_reduce_log_sum_exp_empty_set", "test_reduce_sum_square_do_not_keepdims_random",
    "test_argmax_negative_axis_keepdims_example", "test_argmin_no_keepdims_example_select_last_index",
    "test_cumsum_1d_reverse_exclusive", "test_gather_elements_1", "test_gathernd_example_int32",
    "test_scatternd_max", "test_scatter_elements_with_reduction_max", "test_onehot_with_axis",
    "test_triu", "test_top_k_same_values_2d", "test_nonzero_example", "test_nonmaxsuppression_single_box",
    "test_compress_default_axis", "test_eyelike_with_dtype", "test_unique_sorted_with_axis_3d",
    "test_roialign_aligned_true", "test_center_crop_pad_crop_and_pad", "test_tensorscatter_circular",
    "test_reversesequence_batch", "test_maxunpool_export_with_output_shape", "test_l2normalization_axis_0",
    "test_hannwindow_symmetric", "test_quantizelinear_axis", "test_dequantizelinear_axis",
    "test_gridsample_bicubic", "test_gridsample_reflection_padding", "test_affine_grid_2d",
    "test_rotary_embedding_interleaved", "test_deform_conv_with_mask_bias", "test_col2im_pads", "test_det_nd",
    "test_melweightmatrix",
    # CNN
    "test_Conv2d_no_bias", "test_convtranspose_dilations", "test_maxpool_2d_pads", "test_averagepool_2d_precomputed_pads",
    "test_BatchNorm3d_momentum_eval", "test_instancenorm_example", "test_resize_tf_crop_and_resize_extrapolation_value",
    "test_depthtospace_example", "test_globalaveragepool_precomputed",
    # RNN
    "test_lstm_with_initial_bias", "test_gru_seq_length", "test_simple_rnn_defaults",
    # transformer
    "test_matmul_3d", "test_gemm_default_scalar_bias", "test_layer_normalization_3d_axis_negative_3_epsilon",
    "test_softmax_example", "test_gather_1", "test_where_long_example", "test_expand_dim_unchanged", "test_erf",
    "test_gelu_tanh_1", "test_attention_4d_causal",
    # shape
    "test_shape_example", "test_slice_neg", "test_concat_3d_axis_0", "test_reshape_reduced_dims", "test_tile_precomputed",
    "test_squeeze_negative_axes", "test_unsqueeze_negative_axes", "test_transpose_all_permutations_3",
    "test_split_variable_parts_1d_opset13", "test_range_int32_type_negative_delta", "test_flatten_default_axis",
    "test_constant_pad_axes",
    # elementwise
    "test_add_uint16", "test_mul_int8", "test_sub_int8", "test_pow_types_float32_uint32", "test_clip_default_min",
    "test_relu", "test_sigmoid", "test_tanh", "test_leakyrelu", "test_PReLU_3d", "test_cast_DOUBLE_to_FLOAT",
    "test_equal_uint16", "test_not_3d", "test_sqrt_example", "test_hardswish",
)
