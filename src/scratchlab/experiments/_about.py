"""What the report says about each experiment and each number: the prose of report.html, in one place.

ABOUT[name]: what the experiment reproduces and from which course or paper, the headline metrics a reader should
look at first, what a full-budget reproduction gives (with the docs page that measured it), and the docs page.
GLOSSARY[metric]: what a summary field means (a field not listed is explained by its experiment's docs page).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class About:
    reproduces: str  # one or two sentences: the question, the setting, the source
    headline: tuple[str, ...] = ()  # the summary fields to read first (a sweep's own headline comes from its plan)
    expected: str = ""  # what the full budget gives, over seeds, as docs/ records it
    doc: str = ""  # the docs page with the measurements


UVA = "the UvA Deep Learning course's practicals (assignment 2: recurrent networks)"
ABOUT: dict[str, About] = {
    "palindrome": About(
        f"From {UVA}: a recurrent network reads the first T-1 digits of a palindrome and must predict the last, "
        "which equals the first, so it has to carry one digit across T-1 steps.",
        ("test_accuracy", "steps", "converged"), doc="docs/sequences.md",
        expected="LSTM at T = 10: test accuracy 1.0 on 5 of 5 seeds, converged after 740 +- 152 steps."),
    "palindrome-sweep": About(
        f"The question of {UVA}: how the test accuracy of an RNN, an LSTM and a GRU falls as the palindrome "
        "length T grows, each setting over several seeds, with the training recipe of docs/sequences.md.",
        doc="docs/sequences.md",
        expected="5 seeds: LSTM and GRU at 1.0 for every T up to 50 on every seed; RNN at 1.0 up to T = 20, "
                 "0.943 +- 0.13 at T = 30 (4 of 5 seeds), 0.476 +- 0.43 at T = 50; largest T: rnn 20, lstm 50, "
                 "gru 50."),
    "binary-addition": About(
        "An Elman RNN with hand-set weights that adds binary numbers exactly (checked on every pair of 8-bit "
        "numbers), and an RNN and an LSTM trained on sums of up to 8 bits, tested on 32-bit sums: does learning "
        "generalise to longer numbers?",
        ("adder_exact_accuracy", "rnn_exact_accuracy_32bit", "lstm_exact_accuracy_32bit"), doc="docs/sequences.md",
        expected="5 seeds: adder 1.0 (a check); RNN 1.0 exact on 32-bit sums on every seed; LSTM 0.9961 +- 0.0080 "
                 "exact, 95% interval [0.986, 1.006]."),
    "memorise": About(
        "A character-level LSTM memorises one sentence; scratchlab.rnn.LSTM and torch.nn.LSTM start from the "
        "same weights and see the same data, so their loss curves should coincide.",
        ("max_loss_difference", "chars_right_ours", "chars_right_torch"), doc="docs/sequences.md",
        expected="5 seeds: 68 of 68 characters read back by both on every seed; the largest loss difference "
                 "over the first 20 steps 2.0e-5 +- 2.5e-5."),
    "char-lm": About(
        f"From {UVA}: a two-layer LSTM trained on a book, character by character (sequence length 30, hidden 128, "
        "batch 64, RMSprop 2e-3), with the state carried across batches; it writes text greedily and at "
        "temperatures 0.5, 1.0 and 2.0. Jane Austen's novels offline, tiny-shakespeare (karpathy/char-rnn) by "
        "download; nanoGPT's character transformer reaches 1.47 nats/char on tiny-shakespeare on a GPU.",
        ("val_bpc", "test_bpc", "val_loss", "train_minutes"), doc="docs/sequences.md",
        expected="tiny-shakespeare, 20 minutes of one core, 4 seeds: validation 1.488 +- 0.003 nats/char, 95% "
                 "interval [1.482, 1.493] (<= 1.50 after 7.0 +- 0.9 minutes); test 1.638 +- 0.016."),
    "word-lm": About(
        "A word-level LSTM language model (embedding, two layers, dropout, tied embeddings; after Zaremba et al. "
        "2014, whose small model reaches test perplexity ~115.9 on Penn Treebank) against an interpolated "
        "Kneser-Ney trigram counted on the same training words.",
        ("test_perplexity", "ngram_test_perplexity", "test_improvement_over_ngram"), doc="docs/sequences.md",
        expected="Austen, the default 8,000 steps (11 passes, ~110 min of one core), 2 seeds: test perplexity 85.7 "
                 "+- 0.7 (86.3, 85.2), against the Kneser-Ney trigram's 114.4: 25.1% below it (24.6%, 25.5%)."),
    "grad-flow": About(
        f"The question of {UVA} (2019, Q1.7): the gradient ||dL/dh_t|| of the loss on the last step of a "
        "length-100 palindrome with respect to every hidden state, for an RNN, an LSTM and a GRU, at "
        "initialisation and after training, over seeds: do the gradients vanish as the textbook says?",
        doc="docs/sequences.md"),
    "grad-flow-run": About("One model and one seed of grad-flow: the norms ||dL/dh_t|| at initialisation, then "
                           "after training on palindromes, from the same initial weights.",
                           ("grad_ratio_init", "grad_ratio_trained", "test_accuracy"), doc="docs/sequences.md"),
    "mlp-numpy": About(
        "From the UvA course's assignment 1: a multi-layer perceptron trained from scratch in scratchlab's "
        "NumPy autograd engine (784-512-256-10 on Fashion-MNIST by default).",
        ("test_accuracy", "best_val_accuracy"), doc="docs/design.md",
        expected="Fashion-MNIST, 5 seeds: test accuracy 0.9007 +- 0.0015, 95% interval [0.8988, 0.9025]."),
    "imdb": About(
        "Sentiment classification of IMDB reviews (Maas et al. 2011) with one model: an LSTM, an LSTM with "
        "attention over its hidden states, a GRU, an MLP or a bag of embeddings.",
        ("test_accuracy", "test_loss"), doc="docs/imdb.md"),
    "imdb-compare": About("The five sentiment models of `imdb` on the same data, each over several seeds.",
                          doc="docs/imdb.md"),
    "gan": About(
        "One generative adversarial network (Goodfellow et al. 2014) of MLPs on Fashion-MNIST, judged by an "
        "evaluation classifier: do its samples look like data (Frechet distance) and cover every class?",
        ("frechet", "kl_uniform", "classes_covered"), doc="docs/gan.md",
        expected="vanilla, 3000 rounds, 5 seeds: Frechet 11.6 +- 0.8 (floor 0.30), KL to uniform 0.11 +- 0.10."),
    "cgan": About(
        "A conditional GAN (Mirza & Osindero 2014): the label goes into G and D, so one can ask for a class; "
        "the evaluation classifier checks the generated images are of the class asked for.",
        ("label_accuracy", "frechet", "kl_uniform", "cas", "cas_real_baseline"), doc="docs/gan.md",
        expected="5 seeds: label accuracy 0.961 +- 0.006, 95% interval [0.953, 0.969] (projection D); Frechet "
                 "1.42 against a floor of 0.30."),
    "gan-interpolate": About("Linear interpolation between two latent vectors of a trained GAN: a smooth path of "
                             "images means the generator has not memorised isolated samples.",
                             ("frechet", "kl_uniform"), doc="docs/gan.md"),
    "gan-compare": About(
        "The GAN losses of the literature on one budget: vanilla (Goodfellow et al. 2014), least squares (Mao et "
        "al. 2017), Wasserstein with weight clipping (Arjovsky et al. 2017), a generator trained by MSE alone, "
        "unrolled (Metz et al. 2017) and conditional; mode collapse shows as a high KL to uniform and few classes.",
        doc="docs/gan.md",
        expected="5 seeds, Frechet / KL: vanilla 17.3 +- 0.6 / 0.12 +- 0.06; lsgan 12.8 +- 1.6 / 0.056 +- 0.026; "
                 "wgan 7.0 +- 0.7 / 0.013 +- 0.004; unrolled 5.9 +- 0.9 / 0.020 +- 0.006 (unrolled and WGAN not "
                 "told apart); mse 128 +- 2, 2 classes."),
    "wgan-clip-sweep": About("The WGAN paper's weight clipping c over four orders of magnitude (Arjovsky et al. "
                             "2017): too large a c gives no Lipschitz bound, too small a critic that is nearly "
                             "constant.", doc="docs/gan.md",
                             expected="5 seeds, Frechet: c = 0.1 16.6 +- 1.7, 0.01 10.0 +- 0.9, 0.001 7.4 +- 0.3, "
                                      "0.0001 87.3 +- 1.0 with 6-7 classes covered."),
    "gan-d-g-ratio": About("Discriminator updates per generator update, 1:1 against 5:2, for the same number of "
                           "generator updates.", doc="docs/gan.md"),
    "gan-mixture": About(
        "One GAN (vanilla, LSGAN, WGAN, unrolled or PacGAN) on a 2-D mixture with known modes, the ring of 8 or "
        "the 5x5 grid of 25 Gaussians of VEEGAN (Srivastava et al. 2017) and PacGAN (Lin et al. 2018), judged "
        "on 2,500 samples as those papers judge it.",
        ("modes", "high_quality", "reverse_kl"), doc="docs/gan.md"),
    "gan-modes": About(
        "Mode collapse measured as VEEGAN's and PacGAN's Table 1 measure it: vanilla, unrolled (k = 5), WGAN, "
        "PacGAN2, PacGAN4 and LSGAN GANs on the 2-D ring and grid, modes covered, high-quality share and "
        "reverse KL over seeds, next to the papers' numbers (PacGAN: GAN 6.3 ring / 17.3 grid modes, PacGAN2 "
        "7.9 / 23.8).",
        expected="Maxout D; ring 8,000 rounds (the default), 10 seeds: modes vanilla 5.80 +- 0.79 [5.24, 6.36] against "
        "PacGAN2 7.70 +- 0.48 [7.35, 8.05], reverse KL 0.879 [0.697, 1.061] against 0.161 [0.076, 0.246], 94% / 92.5% "
        "high quality; unrolled 4.60 +- 1.14 (5 seeds); grid at 20,000 rounds (--set base.steps=20000), 10 seeds: "
        "PacGAN2 24.00 +- 1.49 modes, 84% high quality, vanilla 11.20 +- 3.36.", doc="docs/gan.md"),
    "gan-stacked": About(
        "Stacked MNIST (Metz et al. 2017; VEEGAN and PacGAN Table 2): three digits, one per colour channel, so "
        "1000 modes; each channel of 26,000 samples labelled by a CNN judge; modes covered and KL to uniform with "
        "the uniform floor beside it. MLP nets, where the papers use DCGANs.",
        ("modes", "kl", "kl_floor"), doc="docs/gan.md"),
    "cyclegan-d-classes": About(
        "The MNIST <-> SVHN exercise's question: CycleGAN's discriminators as (K+1)-class classifiers (the 10 "
        "digits plus fake) against 2-class real/fake ones; does a translated digit still keep its label?",
        expected="Seeds 0-2 at the default (cut) budget: label preservation X -> Y / Y -> X 0.458 [0.284, 0.633] / "
        "0.504 [0.473, 0.535] with (K+1) classes, 0.097 [-0.007, 0.201] / 0.123 [0.061, 0.184] (chance) with 2; "
        "the best one-to-one relabelling explains only 0.191 / 0.145 of the 2-class translations (no consistent "
        "permutation of the digits).",
        doc="docs/gan.md"),
    "cyclegan-digits": About(
        "CycleGAN (Zhu et al. 2017) between MNIST and house-number digits, with (K+1)-class discriminators as in "
        "the MNIST <-> SVHN exercise: does a translated digit keep its label, both ways?",
        ("label_preservation_x2y", "label_preservation_y2x", "no_translation_x2y", "no_translation_y2x"),
        doc="docs/results/cyclegan-digits.md",
        expected="3 seeds: label preservation MNIST -> synthdigits 0.906 +- 0.014, back 0.942 +- 0.001 (no "
                 "translation: 0.66 and 0.17)."),
}

GLOSSARY: dict[str, str] = {
    "test_accuracy": "fraction of the held-out test set classified right",
    "test_loss": "mean cross-entropy on the test set (nats)",
    "best_val_loss": "lowest validation loss seen during training; the checkpoint kept is that one",
    "best_val_accuracy": "highest validation accuracy seen during training",
    "steps": "optimiser steps (or adversarial rounds) run; a converged run stops before its budget",
    "converged": "the run met its convergence test before the budget ran out (as a mean over seeds: the fraction "
                 "of seeds that did)",
    "train_accuracy_window": "mean training accuracy over the last evaluation window",
    "largest_T": "largest palindrome length up to which the mean test accuracy stays above the threshold at every "
                 "swept length",
    "adder_exact_accuracy": "fraction of the 65,536 pairs of 8-bit numbers the hand-set RNN adds exactly (must be 1)",
    "exact_accuracy": "fraction of test sums with every bit right",
    "bit_accuracy": "fraction of output bits right",
    "max_loss_difference": "largest |loss(scratchlab LSTM) - loss(torch.nn.LSTM)| over training, same start",
    "chars_right": "characters of the sentence read back right by greedy decoding",
    "frechet": "Frechet distance between Gaussians fitted to the evaluation classifier's features of generated and "
               "of test images (lower is closer to the data; compare with the floor)",
    "frechet_floor_train_vs_test": "the same distance between real training and real test images: what a perfect "
                                   "generator would score",
    "kl_uniform": "KL(predicted labels of the samples || uniform) in nats: 0 when every class is generated equally "
                  "often; mode collapse raises it (log 10 = 2.30 when only one class is generated)",
    "classes_covered": "classes among the samples' predicted labels (of 10)",
    "label_accuracy": "conditional models: fraction of samples the evaluation classifier gives the class asked for",
    "classifier_test_accuracy": "the evaluation classifier's own accuracy on real test images: a ceiling for label "
                                "accuracy",
    "d_updates": "discriminator (critic) updates", "g_updates": "generator updates",
    "cas": "Classification Accuracy Score: real test accuracy of a classifier trained on generated labelled samples "
           "only (compare with cas_real_baseline)",
    "cas_real_baseline": "the same classifier trained on as many real training images: the CAS of the data itself",
    "cas_samples": "generated samples (and real ones, for the baseline) the CAS classifiers are trained on",
    "label_preservation": "fraction of translated test digits that the target domain's classifier gives their "
                          "source label (x2y: MNIST to the target domain, y2x: back)",
    "no_translation": "the same classifier on untranslated digits (only resized / recoloured): the baseline a "
                      "translation has to beat",
    "cycle_mse": "mean squared error of x -> G -> F back to x (cycle consistency), pixels in [-1, 1]",
    "modes": "2-D mixtures: modes with at least min_count (default 1, PacGAN's code) high-quality samples",
    "modes_20": "2-D mixtures: modes with at least 20 high-quality samples of the 2,500",
    "n_modes": "modes of the mixture (8 for the ring, 25 for the grid)",
    "kl_floor": "stacked MNIST: the KL to uniform that a perfect generator shows on the same number of samples",
    "real_kl": "stacked MNIST: the judge's KL to uniform on as many stacked triples of real test digits",
    "real_modes": "stacked MNIST: the modes the judge credits to as many stacked triples of real test digits",
    "high_quality": "2-D mixtures: fraction of samples within 3 std of their nearest mode",
    "reverse_kl": "2-D mixtures: KL(model's mode histogram of high-quality samples || uniform) in nats; 0 is every "
                  "mode equally often, log K one mode",
    "wall_seconds": "wall-clock time of the run",
    "bpc": "bits per character: the cross-entropy of the next character in bits (nats / ln 2); lower is better",
    "val_loss": "cross-entropy on the validation block, in nats per character (char-lm) or per word (word-lm)",
    "perplexity": "exp(cross-entropy per word): the number of equally likely words the model is as unsure as",
    "ngram_test_perplexity": "test perplexity of the interpolated Kneser-Ney trigram counted on the same training "
                             "words (the count-based baseline)",
    "ngram_val_perplexity": "the Kneser-Ney trigram's validation perplexity",
    "test_improvement_over_ngram": "1 - test perplexity / the trigram's test perplexity (0.2: 20% lower)",
    "grad_ratio": "||dL/dh_1|| / ||dL/dh_T||: how much of the gradient of the last step's loss reaches the first "
                  "hidden state (1: none lost; 1e-10: vanished)",
    "train_minutes": "wall time of training, evaluations included",
}


def meaning(metric: str) -> str | None:
    """GLOSSARY's entry for `metric`, also for the families (rnn_exact_accuracy_32bit, label_preservation_x2y)."""
    if metric in GLOSSARY:
        return GLOSSARY[metric]
    for key in sorted(GLOSSARY, key=len, reverse=True):
        if key in metric:
            return GLOSSARY[key]
    return None
