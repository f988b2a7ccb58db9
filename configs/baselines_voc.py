"""The loss baselines of the HST / DSRB papers' tables on voc at paper scale (`recipes.paper_scale`).

  python -m mlrpl_jax.train --config configs/baselines_voc.py:asl --workdir runs/asl_voc \
      --config.data.known_proportion=0.3

The argument after ':' names the method (default 'partial_bce'): any loss baseline (partial_bce,
asl, focal, bce_ls, an, an_ls, wan, epr, role, splc, hill, ll_r, ll_ct, ll_cp) or Curriculum
Labeling ('cl'), each on the plain network (ResNet-101 + global pooling + linear head) in the
papers' partial-label protocol (stem + layer1-3 frozen, 448 px, Adam 1e-5, 20 epochs, selection on
the test set as the reference does). The HST paper's ASL and CL rows
(`mlrpl_jax.paper_tables.rows('voc')`) are these runs' published counterparts; its ASL scores
known labels only (the method's default unknown='ignore'). Other label settings:
--config.data.setting=ppl|spl|fal (and data.known_proportion).
EPR and ROLE need the expected number of positives per image: the config sets Cole et al.'s value
where they give one (COCO 2.9, VOC 1.5); for VG-200 none is published and the run asks for it.
Partial BCE (the default): the papers' "Partial BCE [13]" row names Durand et al.'s normalised
loss, but which reduction produced it is not published; the default is the HCP-MLR-PL code's
`BCELoss` (mean over the batch's known entries, `reduction='batch'`, the code the papers' authors
release), Durand et al.'s g(p_y) normalisation one flag away:
--config.method_config.reduction=durand
"""

from configs import base, recipes


def get_config(method: str = "partial_bce"):
    return recipes.baselines_paper_scale(base.get_config(method), "voc")
