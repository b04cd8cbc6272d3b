"""wav2letter model: .arch parser, network loading and running, token set, greedy decoding and error rates."""

from .arch import (
    LAYER_FORMS,
    ORIGINAL_ARCH,
    ArchError,
    LayerSpec,
    build_layer,
    build_network,
    original_arch,
    parse_arch_text,
    parse_line,
    read_arch,
)
from .decode import cer, edit_distance, greedy_decode, greedy_path, wer
from .network import (
    DemoModelNotFound,
    demo_model,
    demo_paths,
    expected_features,
    forward,
    forward_backward,
    load_model,
    output_frames,
)
from .params import ParamsError, load_params, param_key, read_params, save_params, set_params
from .tokens import (
    BLANK,
    LETTER_ROWS,
    NUM_TOKENS,
    TOKENS,
    WORD_SEP,
    indices_to_text,
    normalize_text,
    pack_replabels,
    text_to_indices,
    unpack_replabels,
)
