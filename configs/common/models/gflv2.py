"""GFL v2: GFL v1 plus the Distribution-Guided Quality Predictor (top-4 + mean per side)."""

from .gfl import model

model.head.use_dgqp = True
model.head.dgqp_topk = 4
model.head.dgqp_add_mean = True
model.head.dgqp_channels = 64
