# The EMOv2 1x recipe for mmdet 3.3 (zhangzjn/EMOv2 @ 582a96f, downstreams/det/configs), with the zoo's
# EMOv2 as `ZooBackbone`: AdamW 2e-4, wd 0.05 (none on norms), grad clip 0.1, 500-iteration linear
# warm-up, cosine over epochs 6-12, 4 GPUs x 4 images, 1333x800 keep-ratio resize + flip (mmdet's base).
_base_ = ['mmdet::_base_/schedules/schedule_1x.py', 'mmdet::_base_/default_runtime.py']

custom_imports = dict(imports=['detection.mmdet'], allow_failed_imports=False)

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.0)}),
    clip_grad=dict(max_norm=0.1, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-5, by_epoch=False, begin=0, end=500),
    dict(type='CosineAnnealingLR', eta_min=0.0, begin=6, T_max=6, end=12, by_epoch=True,
         convert_to_iter_based=False),
]
train_cfg = dict(max_epochs=12)
auto_scale_lr = dict(base_batch_size=16)
