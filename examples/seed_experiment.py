"""The lab note's mask loop (Train_before0601_0_softmax_0_by_dhy.cpp, "letters" version), ported line by line.

af::array is a NumPy array in ArrayFire orientation, fl::Variable is afmask.fl.Variable.
Each C++ line is kept as a comment above its port. At the end the result is
compared with afmask's faithful mode run on the same noise:

    python examples/seed_experiment.py --iterations 20
    python examples/seed_experiment.py --arch net.arch --params net.af --audio utt.flac

The per-bin loops are the original's (2K indexing operations per iteration);
afmask's faithful mode runs the same maths through the fused kernel.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np

from afmask import fl
from afmask.features import features
from afmask.fl import Variable, seq, span
from afmask.io import load_audio
from afmask.mask import MaskConfig, MaskObjective, iteration_seed, run_mask
from afmask.mask.noise import host_standard_normal
from afmask.model import demo_model, load_model


def af_mean(a):
    """af::mean<float>(a): the mean of all elements, as float."""
    return np.float32(a.astype(np.float64).mean())


def af_stdev(a):
    """af::stdev<float>(a): the population stdev of all elements, as float."""
    return np.float32(a.astype(np.float64).std())


def af_norm(a):
    """af::norm(a): the Frobenius norm, as double."""
    return float(np.sqrt(np.sum(a.astype(np.float64) ** 2)))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--audio", default=None, help="16 kHz mono utterance (default: the bundled one)")
    p.add_argument("--arch", default=None)
    p.add_argument("--params", default=None)
    p.add_argument("--iterations", type=int, default=20, help="numNoise (the original: 5000)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.audio is None:
        from afmask.io import demo_audio

        args.audio = demo_audio()
    ntwrk = load_model(args.arch, args.params) if args.arch else demo_model()

    feats = features(load_audio(args.audio))
    # auto pre_sample = trainset->get(0);   pre_sample[kFftIdx]: 2K x T, pre_sample[kInputIdx]: T x K
    pre_sample_fft, pre_sample_input = feats["fft"], feats["magnitude"].T

    # af::dim4 noiseDims = pre_sample[kFftIdx].dims(); //2K x T x FLAGS_channels x batchSz
    noiseDims = pre_sample_fft.shape
    # auto m = af::constant(0.1, noiseDims);
    m = np.full(noiseDims, 0.1, dtype=np.float32)
    # float mylr = 0.001;
    mylr = np.float32(0.001)
    # const float fftstdev = af::stdev<float>(pre_sample[kFftIdx]);
    fftstdev = af_stdev(pre_sample_fft)

    # auto prefinalinput=pre_sample[kInputIdx];
    prefinalinput = pre_sample_input
    # const float inputmean=af::mean<float>(pre_sample[kInputIdx]);
    inputmean = af_mean(pre_sample_input)
    # const float inputstdev=af::stdev<float>(pre_sample[kInputIdx]);
    inputstdev = af_stdev(pre_sample_input)
    # prefinalinput= (prefinalinput-inputmean)/inputstdev;
    prefinalinput = (prefinalinput - inputmean) / inputstdev
    # fl::Variable pretruefinalinput(prefinalinput,false);
    pretruefinalinput = Variable(prefinalinput, False)
    # ntwrk->eval();
    ntwrk.eval()
    # preOutput = ntwrk->forward({pretruefinalinput}).front();
    preOutput = ntwrk(pretruefinalinput)
    # the "letters" post-processing of the clean output (the note's second version)
    # fl::Variable tmpaddOutput = fl::sqrt(fl::var(output, axes1)); tmpaddOutput = fl::tileAs(tmpaddOutput, output);
    tmpaddPreOutput = fl.tileAs(fl.sqrt(fl.var(preOutput, [1])), preOutput)
    # fl::Variable addoutput = output / tmpaddOutput;
    addPreOutput = preOutput / tmpaddPreOutput
    # auto tmp = addoutput(af::seq(2,27), af::span, af::span, af::span); auto softmax_add_output = fl::softmax(tmp, 0);
    softmax_add_preOutput = fl.softmax(addPreOutput(seq(2, 27), span, span, span), 0)

    T = noiseDims[1]
    K = noiseDims[0] // 2
    lam = np.float32(10)
    started = time.perf_counter()
    # for (int i = 0; i < numNoise; i++) {
    for i in range(args.iterations):
        # auto epsilon = fl::normal(noiseDims,fftstdev,0).array();
        # (drawn as afmask's faithful mode draws it, so that the two runs can be compared)
        epsilon = host_standard_normal(2 * K, T, 1, iteration_seed(args.seed, i)) * fftstdev
        # auto rawinput = pre_sample[kFftIdx] + m * epsilon;
        rawinput = pre_sample_fft + m * epsilon
        # af::array absinput(af::dim4(K, T, noiseDims[2], noiseDims[3])); af::array backinput(noiseDims);
        absinput = np.empty((K, T), np.float32)
        backinput = np.empty(noiseDims, np.float32)
        # for (size_t j = 0; j < 2*K; j=j+2) {
        for j in range(0, 2 * K, 2):
            # auto fir = rawinput(j, af::span, af::span, af::span);
            fir = rawinput[j]
            # auto sec = rawinput(j+1, af::span, af::span, af::span);
            sec = rawinput[j + 1]
            # auto temp = af::sqrt(fir * fir + sec * sec);
            temp = np.sqrt(fir * fir + sec * sec)
            # absinput(j/2, af::span, af::span, af::span) =  temp;
            absinput[j // 2] = temp
            # backinput(j, ...) = temp; backinput(j+1, ...) = temp;
            backinput[j] = temp
            backinput[j + 1] = temp
        # af::array trInput = af::transpose(absinput);
        trInput = absinput.T
        # auto mean = af::mean<float>(trInput); auto stdev = af::stdev<float>(trInput);
        mean = af_mean(trInput)
        stdev = af_stdev(trInput)
        # auto finalInput = (trInput - mean) / stdev;
        finalInput = (trInput - mean) / stdev
        # fl::Variable trueInput(finalInput, true);
        trueInput = Variable(finalInput, True)
        # auto output = ntwrk->forward({trueInput}).front();
        output = ntwrk(trueInput)
        # std::vector<int> axes1{1}; fl::Variable tmpaddOutput = fl::sqrt(fl::var(output, axes1));
        tmpaddOutput = fl.sqrt(fl.var(output, [1]))
        # tmpaddOutput = fl::tileAs(tmpaddOutput, output);
        tmpaddOutput = fl.tileAs(tmpaddOutput, output)
        # fl::Variable addoutput = output / tmpaddOutput;
        addoutput = output / tmpaddOutput
        # auto tmp = addoutput(af::seq(2,27), af::span, af::span, af::span);
        tmp = addoutput(seq(2, 27), span, span, span)
        # auto softmax_add_output = fl::softmax(tmp, 0);
        softmax_add_output = fl.softmax(tmp, 0)
        # auto f_L2 = fl::norm(softmax_add_preOutput - softmax_add_output, {0,1});
        f_L2 = fl.norm(softmax_add_preOutput - softmax_add_output, [0, 1])
        # auto m_L2 = af::norm(m); //double
        m_L2 = af_norm(m)
        # auto myloss = f_L2 * f_L2;
        myloss = f_L2 * f_L2
        # float totloss = myloss.scalar<float>() - lambda * std::log(m_L2 * m_L2);
        totloss = myloss.scalar() - lam * math.log(m_L2 * m_L2)
        # myloss.backward();
        myloss.backward()

        # auto sigma2 = stdev * stdev;
        sigma2 = stdev * stdev
        # auto dy = trueInput.grad().array(); //T x K
        dy = trueInput.grad().host()
        # auto dsigma2 = af::sum<float>(dy * (trInput - mean) * (-0.5) * std::pow(sigma2, -1.5));
        dsigma2 = np.float32(np.sum(dy * (trInput - mean) * np.float32(-0.5) * np.float32(sigma2 ** -1.5)))
        # auto dmu = af::sum<float>(dy * (-1.0/std::pow(sigma2, 0.5))) + af::sum<float>(-2 * (trInput - mean)) * dsigma2 / (T * K);
        dmu = np.float32(np.sum(dy * np.float32(-1.0 / sigma2 ** 0.5))) + np.float32(np.sum(-2 * (trInput - mean))) * dsigma2 / (T * K)
        # auto dx = dy / std::pow(sigma2, 0.5) + dsigma2 * 2 * (trInput - mean) / (T * K) + dmu / (T * K);
        dx = dy / np.float32(sigma2 ** 0.5) + dsigma2 * 2 * (trInput - mean) / np.float32(T * K) + dmu / np.float32(T * K)
        # af::array xGrad = af::transpose(dx); // K x T x 1 x 1
        xGrad = dx.T
        # auto midGrad = epsilon * epsilon * m + epsilon * pre_sample[kFftIdx];
        midGrad = epsilon * epsilon * m + epsilon * pre_sample_fft
        # auto xGradm = midGrad / backinput; //2K x T x 1 x 1
        xGradm = midGrad / backinput
        # af::array mGrad = af::constant(0, noiseDims);
        mGrad = np.zeros(noiseDims, np.float32)
        # for(size_t j=0; j< 2*K; j=j+2) {
        for j in range(0, 2 * K, 2):
            # mGrad(j, ...) = xGrad(j/2, ...) * xGradm(j, ...);
            mGrad[j] = xGrad[j // 2] * xGradm[j]
            # mGrad(j+1, ...) = xGrad(j/2, ...) * xGradm(j+1, ...);
            mGrad[j + 1] = xGrad[j // 2] * xGradm[j + 1]
        # mGrad = mGrad - 2 * lambda * m / (m_L2 * m_L2);
        mGrad = mGrad - 2 * lam * m / np.float32(m_L2 * m_L2)
        # m = m - mylr * mGrad;
        m = m - mylr * mGrad
        if i % max(1, args.iterations // 10) == 0 or i == args.iterations - 1:
            print(f"iteration {i}: loss {totloss:.6g} (f {myloss.scalar():.6g}), m mean {m.mean():.6g}", file=sys.stderr)
    seconds = time.perf_counter() - started

    # the same run in afmask's faithful mode (fused kernel, same noise)
    cfg = MaskConfig.preset("faithful", iterations=args.iterations, seed=args.seed)
    objective = MaskObjective(pre_sample_fft, ntwrk, "letters", clean_input=feats["input"])
    result = run_mask(objective, cfg, progress=False)
    diff = float(np.max(np.abs(result.m - m)))
    moved = float(np.max(np.abs(m - 0.1)))
    ulp = float(np.spacing(np.float32(np.max(np.abs(m)))))
    print(f"line-by-line port: {args.iterations} iterations in {seconds:.2f} s; faithful mode: {result.seconds:.2f} s")
    print(f"max |m_port - m_faithful| = {diff:.3g} (m moved by up to {moved:.3g}; float32 spacing at max|m|: {ulp:.3g})")
    # agreement to float32 rounding: a few ulps of m, or a small fraction of how far m moved
    agree = diff <= 8 * ulp + 1e-3 * moved
    print("agree" if agree else "DISAGREE")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
