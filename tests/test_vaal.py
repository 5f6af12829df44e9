"""VAAL and TA-VAAL: shapes, conditioning, the discriminator's direction and Algorithm 1's r."""

from __future__ import annotations

import pytest
import torch

import al.methods.sraal as sraal_module
import al.methods.vaal as vaal_module
from al.errors import ConfigError
from al.methods.selector import SelectionRequest
from al.methods.sraal import SraalSelector, oui
from al.methods.ta_vaal import TaVaalSelector
from al.methods.vaal import VaalSelector
from al.models.vae import (
    CODE_INITIALISED,
    MLPVAE,
    ConvVAE,
    Discriminator,
    initialise,
    kaiming_init,
    vae_loss,
)
from al.tasks import Classification


@pytest.mark.parametrize(("size", "vae_size"), [(28, 32), (32, 32), (64, 64)])
def test_vae_and_discriminator_shapes(size, vae_size):
    vae = ConvVAE(3, latent_dim=16, image_size=vae_size, channels=(8, 16, 16, 32))
    x = vae.prepare(torch.randn(2, 3, size, size))
    reconstruction, mu, logvar, _ = vae(x)
    assert x.shape == reconstruction.shape == (2, 3, vae_size, vae_size)
    assert mu.shape == logvar.shape == (2, 16)
    assert Discriminator(16)(mu).shape == (2,)
    with pytest.raises(ConfigError, match="image_size divisible by 16"):
        ConvVAE(3, 16, image_size=40)


def test_rank_conditioning_reaches_decoder_and_discriminator():
    torch.manual_seed(0)
    vae = ConvVAE(1, 8, channels=(4, 4, 4, 4), rank_conditioned=True).eval()
    z = torch.randn(2, 8)
    assert vae.expand.in_features == 9
    assert not torch.allclose(vae.decode(z, torch.zeros(2)), vae.decode(z, torch.ones(2)))
    discriminator = Discriminator(8, hidden=16, rank_conditioned=True)
    assert not torch.allclose(discriminator(z, torch.zeros(2)), discriminator(z, torch.ones(2)))
    mlp = MLPVAE(2, 4, rank_conditioned=True)
    assert mlp.decoder[0].in_features == 5


def test_kl_is_summed_or_averaged():
    mu, logvar = torch.ones(4, 3), torch.zeros(4, 3)
    x = torch.zeros(4, 2)
    assert vae_loss(x, x, mu, logvar, beta=1.0, kl="sum").item() == pytest.approx(6.0)
    assert vae_loss(x, x, mu, logvar, beta=1.0, kl="mean").item() == pytest.approx(0.5)


class OnDevice(torch.nn.Module):
    """A task module stand-in: logits that favour class 0 for every input."""

    device = torch.device("cpu")
    task = Classification()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x.sum(1), torch.zeros(len(x))], dim=1)


def two_pools_request(query: int) -> tuple[SelectionRequest, torch.Tensor]:
    """Labeled points near the origin; candidates: 20 alike, 10 obviously elsewhere."""
    generator = torch.Generator().manual_seed(0)
    labeled = 0.1 * torch.randn(40, 2, generator=generator)
    alike = 0.1 * torch.randn(20, 2, generator=generator)
    elsewhere = 0.1 * torch.randn(10, 2, generator=generator) + torch.tensor([6.0, -6.0])
    candidates = torch.cat([alike, elsewhere])
    candidate_ids = torch.arange(500, 530)
    request = SelectionRequest(
        candidates=[(candidates, candidate_ids)],
        labeled=[(labeled, torch.arange(40))],
        candidate_indices=candidate_ids,
        query=query,
        seed=0,
    )
    return request, candidate_ids[20:]


def select_two_pools(epochs_v: int) -> tuple[VaalSelector, torch.Tensor, torch.Tensor, list]:
    """A small MLP VAAL's (selector, picks, scores) on `two_pools_request`, and the 10
    candidates that lie elsewhere."""
    selector = VaalSelector(
        input_shape=[2],
        latent_dim=2,
        mlp_hidden=16,
        discriminator_hidden=16,
        lr_vae=0.01,
        lr_discriminator=0.01,
        epochs_v=epochs_v,
        batch_size=16,
    )
    request, elsewhere = two_pools_request(query=10)
    with torch.no_grad():
        picks, scores = selector.select(OnDevice(), request)
    return selector, picks, scores, elsewhere.tolist()


def test_the_least_labeled_looking_candidates_are_picked():
    _, picks, scores, elsewhere = select_two_pools(epochs_v=120)
    assert sorted(picks.tolist()) == elsewhere
    assert torch.all(scores[:-1] >= scores[1:])


def ranked_selector(discriminator_rank: str) -> TaVaalSelector:
    return TaVaalSelector(input_shape=[2], discriminator_rank=discriminator_rank)


def test_ranks_are_uniform_only_in_the_first_iteration():
    torch.manual_seed(0)
    ranks = (torch.tensor([-3.0, 0.0, 3.0]), torch.tensor([5.0, -5.0]))
    everyone_l, everyone_u = torch.arange(3), torch.arange(2)
    (decode_l, judge_l), (decode_u, judge_u) = ranked_selector("raw").iteration_conditions(
        0, ranks, everyone_l, everyone_u
    )
    assert torch.equal(decode_l, judge_l) and torch.all((decode_l >= 0) & (decode_l <= 1))
    assert torch.equal(decode_u, judge_u) and torch.all((decode_u >= 0) & (decode_u <= 1))
    assert not torch.allclose(decode_l, torch.sigmoid(ranks[0]))
    for iteration in (1, 7):
        (decode_l, judge_l), (_decode_u, judge_u) = ranked_selector("raw").iteration_conditions(
            iteration, ranks, everyone_l, everyone_u
        )
        assert torch.equal(decode_l, torch.sigmoid(ranks[0])) and torch.equal(judge_l, ranks[0])
        assert torch.equal(judge_u, ranks[1])
    _, (_, judge_u) = ranked_selector("sigmoid").iteration_conditions(
        1, ranks, everyone_l, everyone_u
    )
    assert torch.equal(judge_u, torch.sigmoid(ranks[1]))


def test_bad_options_are_refused():
    with pytest.raises(ConfigError, match="discriminator_rank='normalized'"):
        ranked_selector("normalized")
    with pytest.raises(ConfigError, match="kl='avg'"):
        VaalSelector(input_shape=[2], kl="avg")


def test_oui_known_values():
    one_hot = torch.tensor([[0.0, 1.0, 0.0]])
    assert oui(one_hot).item() == pytest.approx(0.0, abs=1e-6)
    assert oui(one_hot, "unbiased").item() == pytest.approx(1 / 3)  # the code's convention
    assert oui(torch.full((1, 4), 0.25)).item() == 1.0  # uniform: 0/0 → most uncertain
    tie = torch.tensor([[0.5, 0.5, 0.0, 0.0]])  # same max, mass on one rival
    spread = torch.tensor([[0.5, 1 / 6, 1 / 6, 1 / 6]])  # same max, mass spread out
    assert oui(tie).item() > oui(spread).item()
    assert oui(spread).item() == pytest.approx(0.5)  # minimal variance at m: ratio 1, 1 − m
    assert oui(torch.tensor([[0.9, 0.1]])).item() < oui(torch.tensor([[0.6, 0.4]])).item()


def test_sraal_splits_the_latent_and_stacks_five_layers():
    selector = SraalSelector(
        input_shape=[2],
        num_classes=2,
        latent_dim=8,
        mlp_hidden=16,
        discriminator_hidden=16,
        classifier_hidden=[16],
        epochs_v=5,
        batch_size=16,
        lr=0.01,
    )
    request, _ = two_pools_request(query=5)
    request.labeled_labels = torch.arange(40) % 2
    with torch.no_grad():
        picks, scores = selector.select(OnDevice(), request)
    assert len(set(picks.tolist())) == 5 and torch.all(scores[:-1] >= scores[1:])
    assert (
        sum(isinstance(m, torch.nn.Linear) for m in Discriminator(8, linear_layers=5).modules())
        == 5
    )
    with pytest.raises(ConfigError, match="latent_dim=7"):
        SraalSelector(input_shape=[2], num_classes=2, latent_dim=7)


def test_kaiming_layer_init():
    torch.manual_seed(0)
    layer, norm = torch.nn.Linear(2000, 400), torch.nn.BatchNorm1d(4)
    torch.nn.init.constant_(norm.weight, 3.0)
    assert layer.bias.abs().sum() > 0  # PyTorch's default draws the bias
    kaiming_init(layer, CODE_INITIALISED)
    kaiming_init(norm, CODE_INITIALISED)
    assert layer.bias.abs().sum() == 0 and torch.equal(norm.weight, torch.ones(4))
    assert layer.weight.std().item() == pytest.approx((2 / 2000) ** 0.5, rel=0.02)
    with pytest.raises(ConfigError, match=r"method\.selector\.init='xavier'"):
        VaalSelector([2], init="xavier")


def initialised_vae(init: str) -> ConvVAE:
    """A seeded ConvVAE whose heads read 64 · 4 = 256 features, after `initialise`."""
    torch.manual_seed(0)
    vae = ConvVAE(3, 32, channels=(16, 32, 32, 64))
    initialise(vae, init)
    return vae


def transposed_convs(vae: ConvVAE) -> list[torch.nn.ConvTranspose2d]:
    return [m for m in vae.decoder if isinstance(m, torch.nn.ConvTranspose2d)]


def test_code_init_leaves_the_heads_and_transposed_convs_at_pytorchs_default():
    """`code` = the codes' weight_init as it acts; `kaiming` also re-draws heads and ConvTs."""
    default, code, kaiming = (initialised_vae(i) for i in ("default", "code", "kaiming"))
    for head in ("mu", "logvar"):
        assert torch.equal(getattr(code, head).weight, getattr(default, head).weight)
        assert getattr(code, head).bias.abs().min() > 0
        assert getattr(kaiming, head).bias.abs().sum() == 0
    # PyTorch's default: U(±1/√fan_in), std 1/√(3·256) = 0.036; Kaiming-normal: √(2/256) = 0.088.
    assert code.mu.weight.std().item() == pytest.approx((3 * 256) ** -0.5, rel=0.03)
    assert kaiming.mu.weight.std().item() == pytest.approx((2 / 256) ** 0.5, rel=0.03)
    for ours, theirs in zip(transposed_convs(code), transposed_convs(default), strict=True):
        assert torch.equal(ours.weight, theirs.weight)
    assert transposed_convs(code)[-1].bias.abs().min() > 0
    assert transposed_convs(kaiming)[-1].bias.abs().sum() == 0
    # Kaiming-normal std over PyTorch's default for a ConvT: √2 / (1/√3) = √6.
    ratio = transposed_convs(kaiming)[0].weight.std() / transposed_convs(code)[0].weight.std()
    assert ratio.item() == pytest.approx(6**0.5, rel=0.03)
    assert code.expand.bias.abs().sum() == 0 and not torch.equal(
        code.encoder[0].weight, default.encoder[0].weight
    )


def test_the_selectors_initialise_every_network_with_their_init(monkeypatch):
    """VAAL: the VAE and the discriminator; SRAAL: VAE, classifier and discriminator."""
    calls = []

    def recording(network, init):
        calls.append((type(network).__name__, init))

    monkeypatch.setattr(vaal_module, "initialise", recording)
    monkeypatch.setattr(sraal_module, "initialise", recording)
    request, _ = two_pools_request(query=2)
    request.labeled_labels = torch.arange(40) % 2
    VaalSelector([2], latent_dim=2, epochs_v=0, init="kaiming").select(OnDevice(), request)
    assert calls == [("MLPVAE", "kaiming"), ("Discriminator", "kaiming")]
    calls.clear()
    SraalSelector([2], 2, latent_dim=2, epochs_v=0, init="default").select(OnDevice(), request)
    assert calls == [
        ("MLPVAE", "default"),
        ("StateClassifier", "default"),
        ("Discriminator", "default"),
    ]


def test_sraal_decoder_orders_the_same_layers_as_its_code():
    """Same parameters (shapes, order, seeded values) as VAAL's decoder, another forward."""
    layouts = {}
    for decoder in ("vaal", "sraal"):
        torch.manual_seed(0)
        layouts[decoder] = ConvVAE(1, 8, channels=(4, 4, 4, 4), decoder=decoder).eval()
    assert [type(m).__name__ for m in layouts["sraal"].decoder] == [
        "ConvTranspose2d",
        "BatchNorm2d",
        "ConvTranspose2d",
        "ReLU",
        "BatchNorm2d",
        "ReLU",
        "ConvTranspose2d",
        "BatchNorm2d",
        "ReLU",
        "ConvTranspose2d",
    ]
    assert [type(m).__name__ for m in layouts["vaal"].decoder] == [
        *["ConvTranspose2d", "BatchNorm2d", "ReLU"] * 3,
        "ConvTranspose2d",
    ]
    vaal_parameters, sraal_parameters = (list(v.parameters()) for v in layouts.values())
    assert all(torch.equal(a, b) for a, b in zip(vaal_parameters, sraal_parameters, strict=True))
    z = torch.randn(2, 8)
    assert not torch.allclose(layouts["vaal"].decode(z, None), layouts["sraal"].decode(z, None))
    with pytest.raises(ConfigError, match=r"method\.selector\.decoder='dcgan'"):
        SraalSelector([2], 2, decoder="dcgan")


class RecordingSelector(TaVaalSelector):
    """Records the inputs and U(0, 1) draws each objective sees; trains nothing."""

    def vae_objective(self, vae, discriminator, x_l, x_u, decode_l, decode_u, judge_l, judge_u):
        self.steps.append(("vae", x_l.clone(), judge_l.clone()))
        return sum(p.sum() for p in vae.parameters()) * 0

    def discriminator_objective(self, vae, discriminator, x_l, x_u, *conditions):
        self.steps.append(("d", x_l.clone(), conditions[2].clone()))
        return sum(p.sum() for p in discriminator.parameters()) * 0


@pytest.mark.parametrize("discriminator_batch", ["shared", "fresh"])
def test_the_discriminator_step_reuses_the_vae_steps_batch_or_draws_its_own(
    discriminator_batch,
):
    selector = RecordingSelector(input_shape=[1], batch_size=4, epochs_v=1, vae_steps=1)
    selector.discriminator_batch, selector.steps = discriminator_batch, []
    vae, discriminator = MLPVAE(1, 2, rank_conditioned=True), Discriminator(2, 4, True)
    labeled, candidates = torch.arange(8.0)[:, None], 100 + torch.arange(8.0)[:, None]
    ranks = (torch.zeros(8), torch.zeros(8))
    torch.manual_seed(0)
    selector.train_adversary(vae, discriminator, labeled, candidates, ranks)
    (_, vae_x, vae_u), (_, d_x, d_u) = selector.steps[:2]  # iteration 0: r ~ U(0, 1)
    assert [kind for kind, _, _ in selector.steps] == ["vae", "d"] * 4
    same = torch.equal(vae_x, d_x) and torch.equal(vae_u, d_u)
    assert same == (discriminator_batch == "shared")


class RecordingSraal(SraalSelector):
    """Records the batches each objective sees; trains nothing."""

    def generator_loss(self, nets, x_l, y_l, x_u):
        self.steps.append(("generator", x_l.clone(), x_u.clone(), None))
        return sum(p.sum() for p in nets.parameters()) * 0

    def discriminator_loss(self, nets, x_l, x_u, states_u):
        self.steps.append(("d", x_l.clone(), x_u.clone(), states_u.clone()))
        return sum(p.sum() for p in nets.parameters()) * 0


@pytest.mark.parametrize("discriminator_batch", ["shared", "fresh"])
def test_sraal_discriminator_step_reuses_the_generators_batch_or_draws_its_own(
    discriminator_batch,
):
    """`shared`: the state discriminator sees the second generator step's labeled and
    unlabeled samples, with those unlabeled samples' states (the code); `fresh`: its own."""
    selector = RecordingSraal(
        [1],
        2,
        latent_dim=2,
        mlp_hidden=4,
        discriminator_hidden=4,
        classifier_hidden=[4],
        batch_size=4,
        epochs_v=1,
        discriminator_batch=discriminator_batch,
    )
    selector.steps, selector.task = [], Classification()
    nets = torch.nn.ModuleDict(
        {
            "vae": MLPVAE(1, 2, 4, decoder_dims=1),
            "classifier": torch.nn.Linear(1, 2),
            "discriminator": Discriminator(2, 4, linear_layers=5),
        }
    )
    labeled, candidates = torch.arange(8.0)[:, None], 100 + torch.arange(8.0)[:, None]
    states = candidates[:, 0] / 1000  # each candidate's state names it
    torch.manual_seed(0)
    selector.train_adversary(nets, labeled, torch.zeros(8, dtype=torch.long), candidates, states)
    assert [kind for kind, *_ in selector.steps] == ["generator", "generator", "d"] * 4
    (_, first_l, first_u, _), (_, last_l, last_u, _), (_, d_l, d_u, d_states) = selector.steps[:3]
    assert torch.equal(d_states, d_u[:, 0] / 1000)
    assert not torch.equal(first_l, last_l) and not torch.equal(first_u, last_u)
    same = torch.equal(last_l, d_l) and torch.equal(last_u, d_u)
    assert same == (discriminator_batch == "shared")
