# mask_rcnn with EMOv2-1M, 1x (official: mask_rcnn/mask-rcnn_emo2_1M_fpn_1x_coco.py)
_base_ = ['mmdet::_base_/models/mask-rcnn_r50_fpn.py', 'mmdet::_base_/datasets/coco_instance.py',
          './_emov2_1x.py']

model = dict(
    backbone=dict(
        _delete_=True, type='ZooBackbone', model_name='emov2_1m', out_indices=(1, 2, 3, 4),
        frozen_stages=1, norm_eval=True, pretrained=True,
        window_size=10, drop_path_rate=0.04036),
    neck=dict(in_channels=[32, 48, 80, 180]),
)
train_dataloader = dict(batch_size=4, num_workers=4)  # per GPU, 4 GPUs
