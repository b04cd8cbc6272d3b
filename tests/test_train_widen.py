"""The demo-model training's widening: a wider model warm-started from narrower weights computes the same function."""

import numpy as np
import pytest

from test_train_labels import load

torch = pytest.importorskip("torch", reason="torch is not installed (the training tools run on it)")


def test_a_widened_model_gives_the_narrow_models_logits_and_can_learn_with_its_new_units(tmp_path):
    from afmask.model.network import demo_paths

    DEMO_PARAMS = demo_paths()[1]
    common = load("common")
    torch.manual_seed(0)
    width = common.params_width(str(DEMO_PARAMS))
    narrow, wide = common.build_model(width), common.build_model(width + 32)
    common.load_flashlight_params(narrow, str(DEMO_PARAMS))
    common.widen_from(wide, str(DEMO_PARAMS))
    feats = [np.random.default_rng(i).standard_normal((t, common.NFEAT)).astype(np.float32) for i, t in enumerate((90, 60))]
    x, lens = common.batch_inputs(feats)
    with torch.no_grad():
        (a, na), (b, nb) = narrow(x, lens), wide(x, lens)
    assert na.tolist() == nb.tolist()
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    # the new units are live: their incoming weights are drawn, and the loss reaches the weights out of them
    assert float(wide.convs[0].weight.detach()[width:].abs().sum()) > 0
    wide(x, lens)[0].square().sum().backward()
    assert float(wide.convs[1].weight.grad[:, width:].abs().sum()) > 0
    with pytest.raises(ValueError, match="wider"):
        common.widen_from(common.build_model(64), str(DEMO_PARAMS))
