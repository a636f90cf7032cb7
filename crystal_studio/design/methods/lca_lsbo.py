"""LCA-LSBO (Boyar et al.): LSBO whose crystal VAE is briefly retrained with latent-consistency
augmentation around every new best; see :mod:`crystal_studio.design.optimizers.lsbo`."""

from crystal_studio.design.methods import MethodRequest
from crystal_studio.design.methods.lsbo import build_latent_search, generator_dataset, require_generator
from crystal_studio.design.optimizers.settings import LCAConfig

CONFIG = LCAConfig


def retrainer(request: MethodRequest, config: LCAConfig):
    """The retraining (:class:`~crystal_studio.design.optimizers.lsbo.LatentConsistencyRetrainer`) of the
    request's crystal VAE on its training dataset, with the loss weights it was trained with."""
    from crystal_studio.design.optimizers.lsbo import LatentConsistencyRetrainer
    from crystal_studio.ml.crystal_vae_training import load_crystals

    record = request.generator_record
    training = record.hyperparameters.get("training", {})
    weights = {"recon": training.get("recon_weight", 5.0), "kl": training.get("beta", 1.0),
               "property": training.get("property_weight", 1.0)}
    data = load_crystals(request.project, generator_dataset(request), [], request.generator.config.max_sites)
    return LatentConsistencyRetrainer(request.generator, data.arrays, weights, config, request.seed)


def build(request: MethodRequest, config: LCAConfig):
    require_generator(request)
    return build_latent_search(request, config, retrain=retrainer(request, config))
